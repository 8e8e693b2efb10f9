"""The eval rerank stage: one scoring pass, one result per first-stage weight."""

from __future__ import annotations

import pytest

from rerank_ext_core.evaluation.first_stage import StageResult
from rerank_ext_core.evaluation.rerank_stage import rerank_stage
from rerank_ext_core.rerank import blend_with_first_stage


class LengthScorer:
    """Longer text, higher score; counts its calls."""

    def __init__(self):
        self.calls = 0

    def score(self, query, texts):
        self.calls += 1
        return [float(len(t)) for t in texts]


def candidates() -> StageResult:
    stage = StageResult("hybrid")
    stage.ranking = {"q1": ["a", "bbb", "cc", "dddd", "e"], "q2": ["xx", "y"]}
    stage.scores = {"q1": [0.9, 0.8, 0.5, 0.1, 0.05], "q2": [0.7, 0.6]}
    stage.pipeline_latency_ms = {"q1": 1.0, "q2": 1.0}
    return stage


def test_one_scoring_pass_gives_every_weight_its_own_ranking():
    scorer = LengthScorer()
    queries = {"q1": "query one", "q2": "query two"}
    stages = rerank_stage("toy", scorer, queries, candidates(), lambda doc_id: doc_id, top_n=4,
                          first_stage_weights=(0.0, 1.0, 0.5, 0.5))
    assert scorer.calls == 2  # once per query, not once per weight
    assert [s.name for s in stages] == ["toy", "toy, first stage x1", "toy, first stage x0.5"]
    alone, follow, half = stages
    assert alone.ranking["q1"] == ["dddd", "bbb", "cc", "a", "e"]  # reranked head, untouched tail
    assert follow.ranking["q1"] == ["a", "bbb", "cc", "dddd", "e"]  # the first-stage order
    blended = blend_with_first_stage([1.0, 3.0, 2.0, 4.0], [0.9, 0.8, 0.5, 0.1], 0.5)
    expected = [["a", "bbb", "cc", "dddd"][i] for i in sorted(range(4), key=lambda i: -blended[i])]
    assert half.ranking["q1"] == [*expected, "e"]
    assert half.scores["q1"][:4] == pytest.approx(sorted(blended, reverse=True))


def test_a_bad_weight_is_refused_before_any_scoring():
    scorer = LengthScorer()
    with pytest.raises(ValueError, match="first_stage_weight=2"):
        rerank_stage("toy", scorer, {"q1": "q"}, candidates(), str, top_n=3, first_stage_weights=(0.0, 2))
    assert scorer.calls == 0
