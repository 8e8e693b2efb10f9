import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rerank_ext_core.rerank import RankedText, rerank


class FixedScorer:
    def __init__(self, scores):
        self.scores = scores
        self.calls = 0

    def score(self, query, texts):
        self.calls += 1
        return list(self.scores[: len(texts)])


def test_sorted_best_first_with_original_indices(keyword_scorer):
    texts = ["cat", "cat cat dog", "dog", "cat cat cat"]
    ranked = rerank(keyword_scorer, "cat", texts)
    assert [r.index for r in ranked] == [3, 1, 0, 2]
    assert [r.score for r in ranked] == [3.0, 2.0, 1.0, 0.0]


def test_empty_input_never_calls_the_scorer(keyword_scorer):
    assert rerank(keyword_scorer, "cat", [], top_n=3) == []
    assert keyword_scorer.calls == []


def test_top_n_larger_than_candidates_returns_all(keyword_scorer):
    ranked = rerank(keyword_scorer, "cat", ["cat", "dog"], top_n=10)
    assert [r.index for r in ranked] == [0, 1]


def test_top_n_and_threshold(keyword_scorer):
    texts = ["cat", "cat cat", "dog", "cat cat cat"]
    assert [r.index for r in rerank(keyword_scorer, "cat", texts, top_n=2)] == [3, 1]
    assert [r.index for r in rerank(keyword_scorer, "cat", texts, score_threshold=1.5)] == [3, 1]


def test_ties_keep_first_stage_order_and_nan_sorts_last():
    scorer = FixedScorer([1.0, float("nan"), 1.0, 2.0])
    ranked = rerank(scorer, "q", ["a", "b", "c", "d"])
    assert [r.index for r in ranked] == [3, 0, 2, 1]
    assert math.isnan(ranked[-1].score)


@pytest.mark.parametrize("top_n", [0, -1, 1.5, True, "3"])
def test_bad_top_n_is_rejected_with_the_value(top_n, keyword_scorer):
    with pytest.raises(ValueError, match=f"top_n={top_n!r}"):
        rerank(keyword_scorer, "q", ["a"], top_n=top_n)


def test_scorer_returning_wrong_count_is_an_error():
    with pytest.raises(RuntimeError, match="returned 1 scores for 2 texts"):
        rerank(FixedScorer([1.0]), "q", ["a", "b"])


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), max_size=30), st.integers(1, 40))
def test_property_top_n_is_a_prefix_of_the_full_sorted_list(scores, top_n):
    texts = [str(i) for i in range(len(scores))]
    full = rerank(FixedScorer(scores), "q", texts)
    assert sorted(r.index for r in full) == list(range(len(scores)))
    assert all(a.score >= b.score for a, b in zip(full, full[1:]))
    assert rerank(FixedScorer(scores), "q", texts, top_n=top_n) == full[:top_n]
    assert all(isinstance(r, RankedText) for r in full)


# ------------------------------------------------------------------ blending with the first stage
def test_first_stage_weight_zero_is_the_reranker_alone_and_one_is_the_first_stage_order():
    scores = [0.1, 0.9, 0.5, 0.3]
    first_stage = [4.0, 3.0, 2.0, 1.0]
    alone = rerank(FixedScorer(scores), "q", list("abcd"), first_stage_scores=first_stage)
    assert [r.index for r in alone] == [1, 2, 3, 0]
    assert [r.score for r in alone] == [0.9, 0.5, 0.3, 0.1]
    kept = rerank(FixedScorer(scores), "q", list("abcd"), first_stage_scores=first_stage, first_stage_weight=1.0)
    assert [r.index for r in kept] == [0, 1, 2, 3]


def test_blend_normalises_both_scales_so_a_large_first_stage_scale_does_not_dominate():
    # reranker favours c strongly; the first stage favours a slightly, on a huge scale
    scores = [0.0, 0.5, 1.0]
    first_stage = [1000.0, 999.0, 998.0]
    ranked = rerank(FixedScorer(scores), "q", list("abc"), first_stage_scores=first_stage, first_stage_weight=0.3)
    assert [r.index for r in ranked] == [2, 1, 0]
    assert [r.score for r in ranked] == pytest.approx([0.7, 0.5, 0.3])


def test_missing_or_non_numeric_first_stage_scores_count_by_position():
    scores = [0.0, 0.0, 1.0]
    for first_stage in (None, [None, 0.5, 0.1], ["x", 1, 2], [0.2, float("nan"), 0.1], [True, False, True]):
        ranked = rerank(FixedScorer(scores), "q", list("abc"), first_stage_scores=first_stage, first_stage_weight=0.6)
        # positions give a=1, b=0.5, c=0: a 0.6, c 0.4, b 0.2
        assert [r.index for r in ranked] == [0, 2, 1], first_stage


def test_threshold_applies_to_the_rerankers_own_score_when_blending():
    scores = [0.9, 0.2, 0.6]
    ranked = rerank(FixedScorer(scores), "q", list("abc"), score_threshold=0.5,
                    first_stage_scores=[0.0, 1.0, 0.5], first_stage_weight=0.5)
    assert sorted(r.index for r in ranked) == [0, 2]
    assert all(0.0 <= r.score <= 1.0 for r in ranked)


def test_nan_reranker_scores_stay_last_when_blending():
    ranked = rerank(FixedScorer([float("nan"), 0.1, 0.2]), "q", list("abc"),
                    first_stage_scores=[9.0, 1.0, 0.0], first_stage_weight=0.9)
    assert ranked[-1].index == 0 and math.isnan(ranked[-1].score)
    assert [r.index for r in ranked[:2]] == [1, 2]


@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan"), "0.3", None])
def test_bad_first_stage_weight_names_the_value(weight):
    with pytest.raises(ValueError, match=r"first_stage_weight=.*between 0.0 and 1.0"):
        rerank(FixedScorer([1.0]), "q", ["a"], first_stage_weight=weight)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20), st.floats(0, 1))
def test_property_blend_scores_lie_in_the_unit_interval(scores, weight):
    first_stage = list(reversed(scores))
    ranked = rerank(FixedScorer(scores), "q", [str(i) for i in range(len(scores))],
                    first_stage_scores=first_stage, first_stage_weight=weight)
    assert sorted(r.index for r in ranked) == list(range(len(scores)))
    if weight > 0:
        assert all(-1e-9 <= r.score <= 1 + 1e-9 for r in ranked)
