"""The one rerank loop every adapter uses: texts in, ``(index, score)`` pairs out."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import logging

from rerank_ext_core._validation import check_number, check_optional_positive_int, check_text, check_texts

logger = logging.getLogger(__name__)

__all__ = [
    "RankedText",
    "Scorer",
    "blend_with_first_stage",
    "check_threshold_in_bounds",
    "rerank",
    "validate_first_stage_weight",
    "validate_score_threshold",
    "validate_top_n",
]


@runtime_checkable
class Scorer(Protocol):
    """Scores every text against one query; higher is more relevant."""

    def score(self, query: str, texts: Sequence[str]) -> list[float]: ...


class RankedText(NamedTuple):
    index: int
    """Position of the text in the caller's input."""
    score: float
    reranker_score: float | None = None
    """The reranker's own score when ``score`` is a blend with the first stage's, else None."""


def validate_top_n(top_n: int | None) -> int | None:
    return check_optional_positive_int("top_n", top_n, none_means="keep every candidate")


def validate_score_threshold(score_threshold: float | None) -> float | None:
    if score_threshold is None:
        return None
    return check_number("score_threshold", score_threshold, example="score_threshold=0.5, or None for no threshold")


def validate_first_stage_weight(first_stage_weight: float) -> float:
    return check_number(
        "first_stage_weight", first_stage_weight, low=0.0, high=1.0,
        example="first_stage_weight=0.3 (0 ranks by the reranker alone, 1 keeps the first-stage order)",
    )


def _min_max(values: Sequence[float]) -> list[float]:
    low, high = min(values), max(values)
    if high == low:
        return [1.0] * len(values)
    return [(value - low) / (high - low) for value in values]


def blend_with_first_stage(
    scores: Sequence[float], first_stage_scores: Sequence[float | None] | None, weight: float
) -> list[float]:
    """``(1 - weight) * reranker + weight * first stage``, each min-max normalised over the
    candidates of this query, so the two scales never matter.

    ``first_stage_scores`` are the retriever's scores in the candidates' order. When they are
    missing, or any is not a finite number, the first stage counts by position instead: the first
    candidate 1, the last 0 (the input order is the first-stage ranking). A NaN reranker score
    stays NaN, so it still ranks last.
    """
    if not scores or weight == 0.0:
        return [float(s) for s in scores]
    size = len(scores)
    usable = first_stage_scores is not None and len(first_stage_scores) == size and all(
        isinstance(s, numbers.Real) and not isinstance(s, bool) and math.isfinite(s) for s in first_stage_scores
    )
    if usable:
        first = _min_max([float(s) for s in first_stage_scores])  # type: ignore[union-attr, arg-type]
    else:
        first = [1.0 - position / max(1, size - 1) for position in range(size)]
    finite = [float(s) for s in scores if math.isfinite(s)]
    own = _min_max(finite) if finite else []
    normalised = iter(own)
    blended = []
    for score, first_score in zip(scores, first):
        if not math.isfinite(score):
            blended.append(float(score))
            continue
        blended.append((1.0 - weight) * next(normalised) + weight * first_score)
    return blended


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
    first_stage_scores: Sequence[float | None] | None = None,
    first_stage_weight: float = 0.0,
) -> list[RankedText]:
    """Score ``texts`` against ``query`` and return them best first.

    With ``first_stage_weight`` above 0 the returned score blends the reranker's score with the
    first stage's (:func:`blend_with_first_stage`); ``score_threshold`` still applies to the
    reranker's own score, on its documented scale.

    Empty input, or a blank (empty or whitespace) query, returns ``[]`` without calling the
    scorer: with no question, no text is relevant. ``top_n`` larger than the number of texts
    returns all of them. Texts scoring below ``score_threshold`` are dropped. A query that is not
    a string, or texts that are not a sequence of strings, raise ``TypeError``.
    """
    top_n = validate_top_n(top_n)
    score_threshold = check_threshold_in_bounds(validate_score_threshold(score_threshold), scorer)
    first_stage_weight = validate_first_stage_weight(first_stage_weight)
    query = check_text("query", query)
    texts = check_texts("texts", texts)
    if first_stage_weight and first_stage_scores is not None and len(first_stage_scores) != len(texts):
        msg = f"first_stage_scores has {len(first_stage_scores)} scores for {len(texts)} texts; pass one per text, or None."
        raise ValueError(msg)
    if not texts:
        return []
    if not query.strip():
        logger.info("Blank query: no text can be relevant to it, returning no candidates.")
        return []
    scores = scorer.score(query, list(texts))
    if len(scores) != len(texts):
        msg = f"{type(scorer).__name__} returned {len(scores)} scores for {len(texts)} texts."
        raise RuntimeError(msg)
    own = [float(s) for s in scores]
    kept = range(len(own)) if score_threshold is None else [i for i, s in enumerate(own) if s >= score_threshold]
    blended = blend_with_first_stage(own, first_stage_scores, first_stage_weight) if first_stage_weight else own
    ranked = sorted(((i, blended[i]) for i in kept), key=_sort_key)
    if top_n is not None:
        ranked = ranked[:top_n]
    return [RankedText(i, s, own[i] if first_stage_weight else None) for i, s in ranked]
