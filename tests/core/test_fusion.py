from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rerank_ext_core.fusion import (
    FUSION_MODES,
    distribution_based_score_fusion,
    fuse,
    reciprocal_rank_fusion,
    relative_score_fusion,
)

DENSE = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
SPARSE = [("c", 12.0), ("d", 6.0), ("a", 3.0)]


def by_id(results):
    return {r.id: r for r in results}


def test_rrf_hand_computed_with_default_k_60():
    fused = by_id(reciprocal_rank_fusion({"dense": DENSE, "sparse": SPARSE}))
    # equal weights normalised to 0.5 each; 1-based ranks
    assert fused["a"].score == pytest.approx(0.5 / 61 + 0.5 / 63)
    assert fused["c"].score == pytest.approx(0.5 / 63 + 0.5 / 61)
    assert fused["b"].score == pytest.approx(0.5 / 62)
    assert fused["d"].score == pytest.approx(0.5 / 62)
    assert fused["a"].side_ranks == {"dense": 1, "sparse": 3}
    assert fused["a"].side_scores == {"dense": 0.9, "sparse": 3.0}
    assert fused["d"].side_ranks == {"sparse": 2}


def test_rrf_k_and_weights_are_honoured():
    fused = by_id(reciprocal_rank_fusion({"dense": DENSE, "sparse": SPARSE}, rrf_k=1, weights={"dense": 3, "sparse": 1}))
    assert fused["a"].score == pytest.approx(0.75 / 2 + 0.25 / 4)
    assert fused["d"].score == pytest.approx(0.25 / 3)
    order = [r.id for r in reciprocal_rank_fusion({"dense": DENSE, "sparse": SPARSE}, weights={"dense": 0, "sparse": 1})]
    assert order[:3] == ["c", "d", "a"]


def test_relative_score_hand_computed():
    fused = by_id(relative_score_fusion({"dense": DENSE, "sparse": SPARSE}, weights={"dense": 1, "sparse": 1}))
    # dense min-max: a 1, b 0.5, c 0 ; sparse: c 1, d 1/3, a 0
    assert fused["a"].score == pytest.approx(0.5 * 1 + 0.5 * 0)
    assert fused["b"].score == pytest.approx(0.5 * 0.5)
    assert fused["c"].score == pytest.approx(0.5 * 0 + 0.5 * 1)
    assert fused["d"].score == pytest.approx(0.5 * (6 - 3) / 9)


def test_distribution_based_hand_computed():
    fused = by_id(distribution_based_score_fusion({"dense": DENSE, "sparse": SPARSE}))
    mean_d, std_d = 0.5, math.sqrt(((0.4**2) * 2) / 3)
    mean_s = 7.0
    std_s = math.sqrt(((5.0**2) + (1.0**2) + (4.0**2)) / 3)
    expect_a = 0.5 * (0.9 - (mean_d - 3 * std_d)) / (6 * std_d) + 0.5 * (3.0 - (mean_s - 3 * std_s)) / (6 * std_s)
    assert fused["a"].score == pytest.approx(expect_a)
    expect_d = 0.5 * (6.0 - (mean_s - 3 * std_s)) / (6 * std_s)
    assert fused["d"].score == pytest.approx(expect_d)


def test_single_score_sides_do_not_divide_by_zero():
    assert relative_score_fusion({"dense": [("a", 2.0)]})[0].score == pytest.approx(1.0)
    assert distribution_based_score_fusion({"dense": [("a", 2.0)]})[0].score == pytest.approx(0.5)


def test_duplicate_ids_keep_the_best_score_and_ranks_follow_scores():
    fused = by_id(reciprocal_rank_fusion({"dense": [("x", 0.1), ("y", 0.5), ("x", 0.9)]}))
    assert fused["x"].side_scores["dense"] == 0.9
    assert fused["x"].side_ranks["dense"] == 1
    assert fused["y"].side_ranks["dense"] == 2


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"mode": "simple"}, "Unknown fusion mode 'simple'"),
        ({"weights": {"dense": -1, "sparse": 1}}, "dense=-1 is negative"),
        ({"weights": {"dense": 0, "sparse": 0}}, "all zero"),
        ({"weights": {"dense": 1, "bm25": 1}}, "unknown sides ['bm25']"),
        ({"weights": {"dense": float("nan"), "sparse": 1}}, "not a finite number"),
        ({"mode": "rrf", "rrf_k": -5}, "rrf_k=-5"),
    ],
)
def test_bad_settings_raise_clear_errors(kwargs, fragment):
    with pytest.raises(ValueError) as error:
        fuse({"dense": DENSE, "sparse": SPARSE}, **kwargs)
    assert fragment in str(error.value)


def test_nan_scores_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        fuse({"dense": [("a", float("nan"))]})


def test_inputs_are_not_mutated():
    ranked = {"dense": list(DENSE), "sparse": list(SPARSE)}
    weights = {"dense": 2.0, "sparse": 1.0}
    before = copy.deepcopy((ranked, weights))
    for mode in FUSION_MODES:
        fuse(ranked, mode=mode, weights=weights)
    assert (ranked, weights) == before


side = st.lists(
    st.tuples(st.sampled_from([f"d{i}" for i in range(12)]), st.floats(-50, 50, allow_nan=False)),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(dense=side, sparse=side, mode=st.sampled_from(FUSION_MODES),
       w_dense=st.floats(0, 10), w_sparse=st.floats(0.01, 10))
def test_properties(dense, sparse, mode, w_dense, w_sparse):
    fused = fuse({"dense": dense, "sparse": sparse}, mode=mode, weights={"dense": w_dense, "sparse": w_sparse})
    ids = [r.id for r in fused]
    assert len(ids) == len(set(ids))
    assert set(ids) == {i for i, _ in dense} | {i for i, _ in sparse}
    scores = [r.score for r in fused]
    assert scores == sorted(scores, reverse=True)
    for result in fused:
        for name, rank in result.side_ranks.items():
            assert rank >= 1
            assert name in result.side_scores
    if mode == "relative_score":
        assert all(-1e-9 <= s <= 1 + 1e-9 for s in scores)
    # a document ranked first on every side it appears in, and present on both, wins
    if dense and sparse:
        best_dense = max(dense, key=lambda p: p[1])
        best_sparse = max(sparse, key=lambda p: p[1])
        top_d = by_id(fused)
        if best_dense[0] == best_sparse[0] and top_d[best_dense[0]].side_ranks == {"dense": 1, "sparse": 1}:
            assert fused[0].score == pytest.approx(top_d[best_dense[0]].score)


@settings(max_examples=100, deadline=None)
@given(dense=side, sparse=side, mode=st.sampled_from(FUSION_MODES))
def test_side_order_does_not_matter(dense, sparse, mode):
    one = fuse({"dense": dense, "sparse": sparse}, mode=mode)
    two = fuse({"sparse": sparse, "dense": dense}, mode=mode)
    assert {r.id: pytest.approx(r.score) for r in one} == {r.id: r.score for r in two}


@settings(max_examples=100, deadline=None)
@given(dense=side, sparse=side, mode=st.sampled_from(FUSION_MODES), scale=st.floats(0.1, 100))
def test_weights_are_scale_free(dense, sparse, mode, scale):
    one = fuse({"dense": dense, "sparse": sparse}, mode=mode, weights={"dense": 1, "sparse": 2})
    two = fuse({"dense": dense, "sparse": sparse}, mode=mode, weights={"dense": scale, "sparse": 2 * scale})
    assert [pytest.approx(r.score) for r in one] == [r.score for r in two]
