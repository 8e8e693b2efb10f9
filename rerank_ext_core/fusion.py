"""Rank fusion as pure functions keyed by document id.

Each input is a mapping from a side's name (``"dense"``, ``"sparse"``, ...) to that side's list of
``(id, score)`` pairs, higher score = better. Ranks are 1-based, assigned by descending score (ties
keep the input order); an id listed twice on one side keeps its best score. A document missing from
a side contributes nothing from that side. Weights are honoured in every mode and normalised to
sum to 1, so a weight of 0 turns a side off while its scores still show in the output.

Modes:
    ``"rrf"``: reciprocal rank fusion, ``sum(w / (rrf_k + rank))``.
    ``"relative_score"``: min-max normalised scores, ``sum(w * (s - min) / (max - min))``.
    ``"dist_based_score"``: distribution-based score fusion: scores normalised with the side's
        mean +- 3 standard deviations, ``sum(w * (s - (mu - 3 sd)) / (6 sd))``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rerank_ext_core._validation import check_choice, check_number, check_ranked_lists, check_weights

__all__ = [
    "FUSION_MODES",
    "FusedResult",
    "FusionMode",
    "distribution_based_score_fusion",
    "fuse",
    "reciprocal_rank_fusion",
    "fuse_checked",
    "relative_score_fusion",
]

FusionMode = Literal["rrf", "relative_score", "dist_based_score"]
FUSION_MODES: tuple[str, ...] = ("rrf", "relative_score", "dist_based_score")

RankedLists = Mapping[str, Sequence[tuple[str, float]]]


@dataclass(frozen=True)
class FusedResult:
    """One fused document: its id, fused score, and each side's raw score and 1-based rank
    (absent for a side that did not return it)."""

    id: str
    score: float
    side_scores: Mapping[str, float] = field(default_factory=dict)
    side_ranks: Mapping[str, int] = field(default_factory=dict)


def _ranked(side: str, pairs: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """Deduplicate by id (best score kept) and sort by descending score, stable."""
    best: dict[str, float] = {}
    for doc_id, score in pairs:
        if doc_id not in best or score > best[doc_id]:
            best[doc_id] = score
    return sorted(best.items(), key=lambda item: -item[1])


def _combine(
    ranked: RankedLists,
    normalised: Mapping[str, float],
    contribution: Callable[[int, float, _Stats], float],
) -> list[FusedResult]:
    sides = list(ranked)
    fused: dict[str, float] = {}
    scores: dict[str, dict[str, float]] = {}
    ranks: dict[str, dict[str, int]] = {}
    for side in sides:
        side_list = _ranked(side, ranked[side])
        stats = _stats([score for _, score in side_list])
        for rank, (doc_id, score) in enumerate(side_list, start=1):
            value = normalised[side] * contribution(rank, score, stats)
            fused[doc_id] = fused.get(doc_id, 0.0) + value
            scores.setdefault(doc_id, {})[side] = score
            ranks.setdefault(doc_id, {})[side] = rank
    order = sorted(
        fused,
        key=lambda doc_id: (-fused[doc_id], min(ranks[doc_id].values()), str(doc_id)),
    )
    return [
        FusedResult(id=doc_id, score=fused[doc_id], side_scores=scores[doc_id], side_ranks=ranks[doc_id])
        for doc_id in order
    ]


@dataclass(frozen=True)
class _Stats:
    low: float
    high: float
    mean: float
    std: float


def _stats(values: list[float]) -> _Stats:
    if not values:
        return _Stats(0.0, 0.0, 0.0, 0.0)
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / len(values)
    return _Stats(min(values), max(values), mean, math.sqrt(variance))


def _rrf(rrf_k: float) -> Callable[[int, float, _Stats], float]:
    return lambda rank, score, stats: 1.0 / (rrf_k + rank)


def check_rrf_k(rrf_k: float) -> float:
    return check_number("rrf_k", rrf_k, low=0, example="rrf_k=60 (the usual value)")


def reciprocal_rank_fusion(
    ranked: RankedLists, *, weights: Mapping[str, float] | None = None, rrf_k: float = 60
) -> list[FusedResult]:
    """Fused score ``sum(w_side / (rrf_k + rank_side))`` with 1-based ranks."""
    ranked = check_ranked_lists(ranked)
    return _combine(ranked, check_weights(weights, list(ranked)), _rrf(check_rrf_k(rrf_k)))


def _min_max(rank: int, score: float, stats: _Stats) -> float:
    if stats.high == stats.low:
        return 1.0
    return (score - stats.low) / (stats.high - stats.low)


def relative_score_fusion(
    ranked: RankedLists, *, weights: Mapping[str, float] | None = None
) -> list[FusedResult]:
    """Fused score ``sum(w_side * minmax(score_side))``; a side whose scores are all equal
    normalises them to 1."""
    ranked = check_ranked_lists(ranked)
    return _combine(ranked, check_weights(weights, list(ranked)), _min_max)


def _distribution(rank: int, score: float, stats: _Stats) -> float:
    if stats.std == 0:
        return 0.5
    low = stats.mean - 3 * stats.std
    return (score - low) / (6 * stats.std)


def distribution_based_score_fusion(
    ranked: RankedLists, *, weights: Mapping[str, float] | None = None
) -> list[FusedResult]:
    """Fused score ``sum(w_side * (score - (mean - 3 std)) / (6 std))`` per side (mean and std over
    that side's returned scores); a side with zero spread normalises to 0.5."""
    ranked = check_ranked_lists(ranked)
    return _combine(ranked, check_weights(weights, list(ranked)), _distribution)


def check_fusion_mode(mode: str, *, name: str = "mode") -> str:
    return check_choice(name, mode, FUSION_MODES, label="fusion mode")


def fuse(
    ranked: RankedLists,
    *,
    mode: str = "dist_based_score",
    weights: Mapping[str, float] | None = None,
    rrf_k: float = 60,
) -> list[FusedResult]:
    """Fuse with the named ``mode`` (see the module docstring); ``rrf_k`` is used by ``"rrf"``."""
    ranked = check_ranked_lists(ranked)
    return fuse_checked(
        ranked, mode=check_fusion_mode(mode), weights=check_weights(weights, list(ranked)), rrf_k=check_rrf_k(rrf_k)
    )


def fuse_checked(
    ranked: RankedLists, *, mode: str, weights: Mapping[str, float], rrf_k: float
) -> list[FusedResult]:
    """:func:`fuse` for callers whose options were already checked and normalised (weights for
    exactly the sides of ``ranked``, summing to 1): nothing is validated again."""
    contribution = {"rrf": _rrf(rrf_k), "relative_score": _min_max}.get(mode, _distribution)
    return _combine(ranked, weights, contribution)
