"""Every argument rule of the library, in one place: each error names the value, the rule and the fix.

Constructors and query entry points call these; what they return is the normalised value that
internal code then trusts without checking again.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

__all__ = [
    "check_choice",
    "check_non_negative_int",
    "check_number",
    "check_optional_positive_int",
    "check_positive_int",
    "check_text",
    "check_weights",
]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(name: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        msg = f"{name}={value!r} is invalid: pass a positive integer (e.g. {name}=10)."
        raise ValueError(msg)
    return value


def check_optional_positive_int(name: str, value: Any, *, none_means: str) -> int | None:
    """A positive integer, or None (which means ``none_means``)."""
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        msg = f"{name}={value!r} is invalid: pass a positive integer, or None to {none_means}."
        raise ValueError(msg)
    return value


def check_non_negative_int(name: str, value: Any) -> int:
    if not _is_int(value) or value < 0:
        msg = f"{name}={value!r} is invalid: pass an integer >= 0."
        raise ValueError(msg)
    return value


def check_number(
    name: str, value: Any, *, low: float | None = None, high: float | None = None, example: str | None = None
) -> float:
    """A finite real number within ``[low, high]`` (either bound may be open-ended)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not is_number or (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            bounds = f"a number between {low} and {high}"
        elif low is not None:
            bounds = f"a finite number >= {low}"
        elif high is not None:
            bounds = f"a finite number <= {high}"
        else:
            bounds = "a finite number"
        hint = f", e.g. {example}" if example else ""
        msg = f"{name}={value!r} is invalid: pass {bounds}{hint}."
        raise ValueError(msg)
    return float(value)


def check_choice(name: str, value: Any, choices: Collection[str], *, label: str | None = None) -> str:
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        msg = f"Unknown {label or name} {value!r}: {name}={value!r} is not supported; choose one of {options}."
        raise ValueError(msg)
    return value


def check_text(name: str, value: Any) -> str:
    """A string (a query, a document): anything else is a TypeError, never silently str()-ed."""
    if not isinstance(value, str):
        msg = f"{name} must be a string, got {type(value).__name__} ({value!r:.60})."
        raise TypeError(msg)
    return value


def check_weights(weights: Mapping[str, float] | None, sides: Sequence[str]) -> dict[str, float]:
    """Weights for ``sides`` normalised to sum to 1; ``None`` means equal weights."""
    if weights is None:
        return {side: 1.0 / len(sides) for side in sides} if sides else {}
    if not isinstance(weights, Mapping):
        msg = f"weights={weights!r} is invalid: pass a dict of side name to weight, e.g. {{'dense': 0.5, 'sparse': 0.5}}."
        raise TypeError(msg)
    unknown = sorted(map(str, set(weights) - set(sides)))
    if unknown:
        msg = f"weights name unknown sides {unknown}; the sides are {list(sides)}."
        raise ValueError(msg)
    checked: dict[str, float] = {}
    for side in sides:
        value = weights.get(side, 0.0)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            msg = f"weight {side}={value!r} is not a finite number; pass a number >= 0."
            raise ValueError(msg)
        if value < 0:
            msg = f"weight {side}={value} is negative; weights must be >= 0 (use 0 to turn a side off)."
            raise ValueError(msg)
        checked[side] = float(value)
    total = sum(checked.values())
    if total == 0:
        msg = (
            f"weights {dict(weights)} are all zero, so no side counts; give at least one side a "
            "weight above 0 (e.g. {'dense': 0.5, 'sparse': 0.5})."
        )
        raise ValueError(msg)
    return {side: value / total for side, value in checked.items()}
