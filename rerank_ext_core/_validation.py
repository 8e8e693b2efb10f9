"""Every argument rule of the library, in one place: each error names the value, the rule and the fix.

Constructors and query entry points call these; what they return is the normalised value that
internal code then trusts without checking again.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

__all__ = [
    "check_bool",
    "check_choice",
    "check_items",
    "check_non_negative_int",
    "check_number",
    "check_optional_positive_int",
    "check_optional_text",
    "check_positive_int",
    "check_ranked_lists",
    "check_text",
    "check_texts",
    "check_weights",
]


def _is_int(value: Any) -> bool:
    """An integer, numpy's included; never a bool."""
    return isinstance(value, Integral) and not isinstance(value, (bool, _numpy_bools()))


def _numpy_bools() -> tuple[type, ...]:
    numpy = sys.modules.get("numpy")
    return (numpy.bool_,) if numpy is not None else ()


def _is_real(value: Any) -> bool:
    """A real number, numpy's included; never a bool."""
    return isinstance(value, Real) and not isinstance(value, (bool, _numpy_bools()))


def check_positive_int(name: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        msg = f"{name}={value!r} is invalid: pass a positive integer (e.g. {name}=10)."
        raise ValueError(msg)
    return int(value)


def check_optional_positive_int(name: str, value: Any, *, none_means: str) -> int | None:
    """A positive integer, or None (which means ``none_means``)."""
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        msg = f"{name}={value!r} is invalid: pass a positive integer, or None to {none_means}."
        raise ValueError(msg)
    return int(value)


def check_non_negative_int(name: str, value: Any) -> int:
    if not _is_int(value) or value < 0:
        msg = f"{name}={value!r} is invalid: pass an integer >= 0."
        raise ValueError(msg)
    return int(value)


def check_number(
    name: str, value: Any, *, low: float | None = None, high: float | None = None, example: str | None = None
) -> float:
    """A finite real number within ``[low, high]`` (either bound may be open-ended)."""
    is_number = _is_real(value) and math.isfinite(value)
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


def check_bool(name: str, value: Any, *, optional: bool = False) -> bool | None:
    """``True`` or ``False`` (or ``None`` when ``optional``): never ``bool("no")``."""
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        allowed = "True, False or None" if optional else "True or False"
        msg = f"{name}={value!r} is invalid: pass {allowed}."
        raise TypeError(msg)
    return value


def check_optional_text(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        msg = f"{name} must be a string or None, got {type(value).__name__} ({value!r:.60})."
        raise TypeError(msg)
    return value


def check_text(name: str, value: Any) -> str:
    """A string (a query, a document): anything else is a TypeError, never silently str()-ed."""
    if not isinstance(value, str):
        msg = f"{name} must be a string, got {type(value).__name__} ({value!r:.60})."
        raise TypeError(msg)
    return value


def check_items(name: str, values: Any, item_type: type | tuple[type, ...], type_name: str) -> list[Any]:
    """A list of ``item_type`` from any iterable that is not a string or a mapping (a list, a
    tuple, a numpy array, dict keys); the error names the first bad item."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        msg = f"{name} must be a list of {type_name}s, got {type(values).__name__}."
        raise TypeError(msg)
    values = list(values)
    numpy = sys.modules.get("numpy")
    if numpy is not None and item_type is str:  # numpy string scalars are str subclasses already
        values = [str(v) if isinstance(v, numpy.str_) else v for v in values]
    for position, value in enumerate(values):
        if not isinstance(value, item_type):
            msg = f"{name}[{position}] must be a {type_name}, got {type(value).__name__} ({value!r:.60})."
            raise TypeError(msg)
    return list(values)


def check_texts(name: str, values: Any) -> list[str]:
    return check_items(name, values, str, "string")


def check_ranked_lists(ranked: Any) -> dict[str, list[tuple[str, float]]]:
    """Fusion input: ``{side: [(id, score), ...]}``, ids strings, scores finite real numbers."""
    if not isinstance(ranked, Mapping):
        msg = f"ranked must be a dict of side name to [(id, score), ...] lists, got {type(ranked).__name__}."
        raise TypeError(msg)
    checked: dict[str, list[tuple[str, float]]] = {}
    for side, pairs in ranked.items():
        if not isinstance(side, str):
            msg = f"ranked has the side name {side!r}; side names must be strings such as 'dense'."
            raise TypeError(msg)
        if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Iterable):
            msg = f"side {side!r} (dense, sparse, ...) must be a list of (id, score) pairs, got {type(pairs).__name__}."
            raise TypeError(msg)
        checked[side] = []
        for pair in pairs:
            try:
                doc_id, score = pair
            except (TypeError, ValueError):
                msg = f"side {side!r} has the item {pair!r:.60}; each item must be an (id, score) pair."
                raise TypeError(msg) from None
            if isinstance(pair, (str, bytes)):
                msg = f"side {side!r} has the item {pair!r:.60}; each item must be an (id, score) pair."
                raise TypeError(msg)
            if not isinstance(doc_id, (str, Integral)) or isinstance(doc_id, bool):
                msg = f"side {side!r} has the id {doc_id!r:.60}; ids must be strings (or integers)."
                raise TypeError(msg)
            if not _is_real(score) or not math.isfinite(score):
                msg = f"side {side!r} gave document {doc_id!r} the score {score!r}; scores must be finite numbers (not NaN or infinite)."
                raise ValueError(msg)
            checked[side].append((doc_id, float(score)))
    return checked


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
        if not _is_real(value) or not math.isfinite(value):
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
