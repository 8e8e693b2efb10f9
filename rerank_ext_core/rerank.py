"""The one rerank loop every adapter uses: texts in, ``(index, score)`` pairs out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import logging

from rerank_ext_core._validation import check_number, check_optional_positive_int, check_text, check_texts

logger = logging.getLogger(__name__)

__all__ = ["RankedText", "Scorer", "check_threshold_in_bounds", "rerank", "validate_score_threshold", "validate_top_n"]


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


def check_threshold_in_bounds(score_threshold: float | None, scorer: Scorer) -> float | None:
    """Refuse a threshold outside the scores ``scorer`` can give (its ``score_bounds``, when it has
    them): it would silently drop every candidate, or none."""
    bounds = getattr(scorer, "score_bounds", None)
    if score_threshold is None or bounds is None:
        return score_threshold
    low, high = bounds
    if not low <= score_threshold <= high:
        msg = (
            f"score_threshold={score_threshold!r} is outside the scores {scorer!r} gives, "
            f"which lie in [{low}, {high}]; pass a threshold in that range, None for no threshold, "
            "or normalize=False to threshold raw logits."
        )
        raise ValueError(msg)
    return score_threshold


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

    Empty input, or a blank (empty or whitespace) query, returns ``[]`` without calling the
    scorer: with no question, no text is relevant. ``top_n`` larger than the number of texts
    returns all of them. Texts scoring below ``score_threshold`` are dropped. A query that is not
    a string, or texts that are not a sequence of strings, raise ``TypeError``.
    """
    top_n = validate_top_n(top_n)
    score_threshold = check_threshold_in_bounds(validate_score_threshold(score_threshold), scorer)
    query = check_text("query", query)
    texts = check_texts("texts", texts)
    if not texts:
        return []
    if not query.strip():
        logger.info("Blank query: no text can be relevant to it, returning no candidates.")
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
