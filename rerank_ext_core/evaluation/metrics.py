"""Retrieval metrics through ir-measures (pytrec_eval underneath) and latency percentiles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rerank_ext_core._optional import require

__all__ = ["METRIC_NAMES", "evaluate_run", "latency_summary", "ranking_to_run"]

METRIC_NAMES = ("nDCG@10", "R@100", "RR@10")
"""nDCG@10 (linear gain, as trec_eval and BEIR), Recall@100, and MRR@10 (reciprocal rank cut at 10)."""

_NOTHING_RETRIEVED = "\x00nothing-retrieved"


def ranking_to_run(ranking: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """Turn ``{query_id: [doc_id, best first]}`` into a run whose scores encode exactly that order.

    trec_eval sorts a run by score and breaks ties by document id, which would silently reorder
    documents that a stage left tied; scoring by rank keeps the stage's own order. A query that
    retrieved nothing gets one unjudged placeholder, so it counts as 0 instead of being dropped.
    """
    run: dict[str, dict[str, float]] = {}
    for query_id, doc_ids in ranking.items():
        depth = len(doc_ids)
        run[query_id] = {doc_id: float(depth - rank) for rank, doc_id in enumerate(doc_ids)}
        if not doc_ids:
            run[query_id] = {_NOTHING_RETRIEVED: 0.0}
    return run


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]],
    ranking: Mapping[str, Sequence[str]],
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Return ``(mean per metric, {metric: {query_id: value}})`` over every query in ``qrels``.

    A judged query missing from ``ranking`` scores 0 on every metric.
    """
    ir_measures = require("ir_measures", feature="rerank-ext eval metrics", extra="eval")
    measures = [ir_measures.parse_measure(name) for name in METRIC_NAMES]
    full_ranking = {query_id: list(ranking.get(query_id, ())) for query_id in qrels}
    run = ranking_to_run(full_ranking)
    qrels_plain = {qid: {did: int(grade) for did, grade in judged.items()} for qid, judged in qrels.items()}
    per_query: dict[str, dict[str, float]] = {name: {} for name in METRIC_NAMES}
    for metric in ir_measures.iter_calc(measures, qrels_plain, run):
        per_query[str(metric.measure)][metric.query_id] = float(metric.value)
    aggregate = ir_measures.calc_aggregate(measures, qrels_plain, run)
    means = {str(measure): float(value) for measure, value in aggregate.items()}
    return {name: means[name] for name in METRIC_NAMES}, per_query


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95 and mean of per-query latencies in milliseconds."""
    if not latencies_ms:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "mean_ms": float("nan")}
    values = np.asarray(latencies_ms, dtype=float)
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "mean_ms": float(values.mean()),
    }
