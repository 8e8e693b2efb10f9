"""The one rerank loop every adapter uses: texts in, ``(index, score)`` pairs out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from rerank_ext_core._validation import check_number, check_optional_positive_int

__all__ = ["RankedText", "Scorer", "rerank", "validate_top_n", "validate_score_threshold"]


@runtime_checkable
class Scorer(Protocol):
    """Scores every text against one query; higher is more relevant."""

    def score(self, query: str, texts: Sequence[str]) -> list[float]: ...


class RankedText(NamedTuple):
    index: int
    """Position of the text in the caller's input."""
    score: float


def validate_top_n(top_n: int | None) -> int | None:
    return check_optional_positive_int("top_n", top_n, none_means="keep every candidate")


def validate_score_threshold(score_threshold: float | None) -> float | None:
    if score_threshold is None:
        return None
    return check_number("score_threshold", score_threshold, example="score_threshold=0.5, or None for no threshold")


def _sort_key(item: tuple[int, float]) -> tuple[float, int]:
    index, score = item
    # NaN never outranks a real score; ties keep the input (first-stage) order.
    return (math.inf if math.isnan(score) else -score, index)


def rerank(
    scorer: Scorer,
    query: str,
    texts: Sequence[str],
    *,
    top_n: int | None = None,
    score_threshold: float | None = None,
) -> list[RankedText]:
    """Score ``texts`` against ``query`` and return them best first.

    Empty input returns ``[]`` without calling the scorer. ``top_n`` larger than the number of
    texts returns all of them. Texts scoring below ``score_threshold`` are dropped.
    """
    top_n = validate_top_n(top_n)
    score_threshold = validate_score_threshold(score_threshold)
    if not texts:
        return []
    scores = scorer.score(query, list(texts))
    if len(scores) != len(texts):
        msg = f"{type(scorer).__name__} returned {len(scores)} scores for {len(texts)} texts."
        raise RuntimeError(msg)
    ranked = sorted(((i, float(s)) for i, s in enumerate(scores)), key=_sort_key)
    if score_threshold is not None:
        ranked = [(i, s) for i, s in ranked if s >= score_threshold]
    if top_n is not None:
        ranked = ranked[:top_n]
    return [RankedText(i, s) for i, s in ranked]
