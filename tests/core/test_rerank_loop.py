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
