"""The evaluation's metrics agree with a case computed by hand, and keep each stage's own order."""

from __future__ import annotations

import math

import pytest

from rerank_ext_core.evaluation.metrics import evaluate_run, latency_summary
from rerank_ext_core.evaluation.first_stage import StageResult
from rerank_ext_core.evaluation.rerank_stage import rerank_stage

pytest.importorskip("ir_measures")


def test_metrics_match_a_hand_computed_case_with_graded_judgments():
    qrels = {"q1": {"d1": 2, "d2": 1, "d3": 0}, "q2": {"d5": 1}}
    ranking = {"q1": ["d3", "d1", "d4", "d2"], "q2": ["d6", "d7"]}

    means, per_query = evaluate_run(qrels, ranking)

    # q1 by hand: linear gains at ranks 2 and 4, ideal order d1 (2) then d2 (1).
    dcg = 2 / math.log2(2 + 1) + 1 / math.log2(4 + 1)
    ideal_dcg = 2 / math.log2(1 + 1) + 1 / math.log2(2 + 1)
    assert per_query["nDCG@10"]["q1"] == pytest.approx(dcg / ideal_dcg, abs=1e-9)
    assert per_query["RR@10"]["q1"] == pytest.approx(1 / 2)  # first relevant at rank 2
    assert per_query["R@100"]["q1"] == pytest.approx(2 / 2)  # both relevant documents found
    # q2 retrieved nothing relevant: every metric is 0.
    assert per_query["nDCG@10"]["q2"] == 0.0
    assert per_query["R@100"]["q2"] == 0.0
    assert means["nDCG@10"] == pytest.approx(dcg / ideal_dcg / 2, abs=1e-9)
    assert means["RR@10"] == pytest.approx(0.25)
    assert means["R@100"] == pytest.approx(0.5)


def test_cutoffs_apply_at_ten():
    qrels = {"q": {"relevant": 1}}
    ranking = {"q": [f"other{i}" for i in range(10)] + ["relevant"]}  # rank 11

    means, _ = evaluate_run(qrels, ranking)

    assert means["nDCG@10"] == 0.0
    assert means["RR@10"] == 0.0
    assert means["R@100"] == 1.0


def test_the_stage_order_is_evaluated_not_the_document_id_order():
    # trec_eval breaks score ties by document id; the ranking's own order must win.
    qrels = {"q": {"a": 1}}
    first, _ = evaluate_run(qrels, {"q": ["a", "z"]})
    second, _ = evaluate_run(qrels, {"q": ["z", "a"]})
    assert first["RR@10"] == 1.0
    assert second["RR@10"] == 0.5


def test_a_judged_query_missing_from_the_ranking_counts_as_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    means, per_query = evaluate_run(qrels, {"q1": ["a"]})
    assert per_query["RR@10"]["q2"] == 0.0
    assert means["RR@10"] == pytest.approx(0.5)


def test_latency_percentiles():
    summary = latency_summary([float(v) for v in range(1, 101)])
    assert summary["p50_ms"] == pytest.approx(50.5)
    assert summary["p95_ms"] == pytest.approx(95.05)


class _WordOverlapScorer:
    """Deterministic and torch-free: the number of query words in the text."""

    def score(self, query, texts):
        words = set(query.split())
        return [float(len(words & set(text.split()))) for text in texts]


def test_rerank_stage_reorders_the_head_and_keeps_the_tail_below_it():
    candidates = StageResult("hybrid:rrf")
    candidates.ranking["q"] = ["d0", "d1", "d2", "d3"]
    candidates.pipeline_latency_ms["q"] = 5.0
    texts = {"d0": "nothing", "d1": "red fox", "d2": "red", "d3": "red fox jumps"}

    [stage] = rerank_stage(
        "overlap", _WordOverlapScorer(), {"q": "red fox jumps"}, candidates, texts.__getitem__, top_n=3
    )

    assert stage.ranking["q"] == ["d1", "d2", "d0", "d3"]  # d3 is outside the top-3: it stays last
    assert stage.scores["q"][:3] == [2.0, 1.0, 0.0]
    assert stage.pipeline_latency_ms["q"] >= 5.0 + stage.latency_ms["q"] - 1e-9
