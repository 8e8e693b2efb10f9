"""Argument checks shared by every scorer: each error names the value, the rule and the fix."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

__all__ = ["check_choice", "check_positive_int", "check_non_negative_int"]


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{name}={value!r} is invalid: pass a positive integer."
        raise ValueError(msg)
    return value


def check_non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = f"{name}={value!r} is invalid: pass an integer >= 0."
        raise ValueError(msg)
    return value


def check_choice(name: str, value: Any, choices: Collection[str]) -> str:
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        msg = f"{name}={value!r} is not supported: choose one of {options}."
        raise ValueError(msg)
    return value
