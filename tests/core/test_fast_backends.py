"""OpenVINO / ONNX Runtime / torch-bf16 backends of CrossEncoderScorer on a tiny checkpoint:
fidelity against torch fp32, the export cache, and the errors and fallbacks."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from rerank_ext_core import export, runtimes
from rerank_ext_core.cross_encoder import CrossEncoderScorer

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

QUERY = "what do cats eat?"
TEXTS = [
    "Cats are obligate carnivores and eat meat.",
    "The stock market fell sharply on Monday.",
    "Dogs eat a varied diet, cats eat fish.",
    "",
    "猫是食肉动物，主要吃肉。",
    "Kittens drink milk. " * 80,  # longer than max_length: truncated the same way on every path
    "Photosynthesis turns light into sugar.",
    "Cat food is mostly meat and fish.",
] * 3


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


@pytest.fixture
def export_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RERANK_EXT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "exports"


@pytest.fixture
def reference(cross_encoder_path):
    scorer = CrossEncoderScorer(cross_encoder_path, backend="sentence-transformers", precision="fp32",
                                normalize=False, max_length=64, batch_size=5)
    return np.array(scorer.score(QUERY, TEXTS))


def finite(values):
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_fp32_exports_equal_torch(cross_encoder_path, reference, export_cache, backend):
    scorer = CrossEncoderScorer(cross_encoder_path, backend=backend, precision="fp32", normalize=False,
                                max_length=64, batch_size=5)
    assert scorer.precision == "fp32"
    scores = np.array(scorer.score(QUERY, TEXTS))
    assert np.isneginf(scores[3])  # the blank text, as on the torch backend
    assert np.max(np.abs(finite(scores) - finite(reference))) < 1e-4


@pytest.mark.parametrize(("backend", "precision", "tolerance", "min_rho"), [
    ("sentence-transformers", "bf16", 0.03, 0.98),
    ("openvino", "bf16", 0.03, 0.98),
    ("openvino", "int8", 0.03, 0.98),
    ("onnxruntime", "int8", 0.04, 0.97),
])
def test_reduced_precisions_stay_close(cross_encoder_path, reference, export_cache, backend, precision, tolerance, min_rho):
    """Stated tolerance, on this tiny random model (fp32 logits spread with std ~0.08; measured
    max errors 0.007-0.023, Spearman 0.985-0.996): max |logit - fp32 logit| <= ``tolerance`` and
    Spearman rank correlation >= ``min_rho``. Trained models: benchmarks/bench_fast_backends.py."""
    scorer = CrossEncoderScorer(cross_encoder_path, backend=backend, precision=precision, normalize=False,
                                max_length=64, batch_size=5)
    assert scorer.precision == precision
    scores = finite(scorer.score(QUERY, TEXTS))
    expected = finite(reference)
    assert np.max(np.abs(scores - expected)) <= tolerance
    assert spearman(scores, expected) >= min_rho
    assert not np.allclose(scores, expected, atol=1e-7)  # it really ran at the lower precision


def test_normalize_and_threshold_keep_their_meaning(cross_encoder_path, export_cache):
    from rerank_ext_core.rerank import rerank

    torch_scorer = CrossEncoderScorer(cross_encoder_path, backend="sentence-transformers", precision="fp32", max_length=64)
    fast = CrossEncoderScorer(cross_encoder_path, backend="openvino", precision="fp32", max_length=64)
    assert fast.score_bounds == (0.0, 1.0)
    threshold = float(np.median(torch_scorer.score(QUERY, TEXTS[:8])))
    kept = [r.index for r in rerank(torch_scorer, QUERY, TEXTS[:8], score_threshold=threshold)]
    assert [r.index for r in rerank(fast, QUERY, TEXTS[:8], score_threshold=threshold)] == kept


def test_the_export_is_made_once_and_rebuilt_when_damaged(cross_encoder_path, export_cache, monkeypatch, caplog):
    builds = []
    original = export._build
    monkeypatch.setattr(export, "_build", lambda request, folder: (builds.append(request), original(request, folder))[1])
    first = CrossEncoderScorer(cross_encoder_path, backend="onnxruntime", precision="int8", max_length=64)
    expected = first.score(QUERY, TEXTS[:8])
    CrossEncoderScorer(cross_encoder_path, backend="onnxruntime", precision="int8", max_length=64)
    assert len(builds) == 1  # the second scorer reused the cached export
    [folder] = [p for p in export_cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    model_file = folder / "model.onnx"
    model_file.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])  # truncated
    with caplog.at_level(logging.WARNING, logger="rerank_ext_core.export"):
        again = CrossEncoderScorer(cross_encoder_path, backend="onnxruntime", precision="int8", max_length=64)
    assert len(builds) == 2 and "damaged" in caplog.text
    assert again.score(QUERY, TEXTS[:8]) == pytest.approx(expected)
    (folder / "manifest.json").unlink()  # an interrupted export
    CrossEncoderScorer(cross_encoder_path, backend="onnxruntime", precision="int8", max_length=64)
    assert len(builds) == 3
    assert not [p for p in export_cache.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_a_changed_checkpoint_gets_a_new_export(cross_encoder_path, export_cache, tmp_path):
    from tests.checkpoints import build_cross_encoder

    copy = tmp_path / "copy"
    shutil.copytree(cross_encoder_path, copy)
    before = CrossEncoderScorer(str(copy), backend="openvino", precision="fp32", max_length=64, normalize=False)
    first = before.score(QUERY, TEXTS[:4])
    build_cross_encoder(str(copy), tmp_path / "other", seed=7)
    shutil.copy(tmp_path / "other" / "model.safetensors", copy / "model.safetensors")
    after = CrossEncoderScorer(str(copy), backend="openvino", precision="fp32", max_length=64, normalize=False)
    assert after.score(QUERY, TEXTS[:4]) != pytest.approx(first)
    assert len([p for p in export_cache.iterdir() if p.is_dir()]) == 2


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"precision": "int4"}, r"precision='int4'.*'fp32', 'bf16', 'int8'"),
    ({"backend": "tensorrt"}, r"backend='tensorrt'.*'openvino', 'onnxruntime'"),
    ({"backend": "onnxruntime", "precision": "bf16"}, r"precision='bf16' is not available with backend='onnxruntime': choose one of 'fp32', 'int8'"),
    ({"backend": "sentence-transformers", "precision": "int8"}, r"precision='int8'.*backend='sentence-transformers'.*'openvino' or 'onnxruntime'"),
])
def test_unknown_or_unsupported_choices_name_the_choices(cross_encoder_path, export_cache, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CrossEncoderScorer(cross_encoder_path, **kwargs)


def test_a_missing_runtime_names_the_extra(cross_encoder_path, export_cache, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"rerank-ext\[openvino\]"):
        CrossEncoderScorer(cross_encoder_path, backend="openvino", precision="int8")


def test_a_failed_export_fails_clearly_unless_auto(cross_encoder_path, export_cache, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise ValueError("this graph cannot be converted")

    monkeypatch.setattr(export, "_export_openvino", broken)
    with pytest.raises(RuntimeError, match=r"Exporting .* to openvino \(int8\) failed: ValueError: this graph cannot be converted"):
        CrossEncoderScorer(cross_encoder_path, backend="openvino", precision="int8")
    assert not list(export_cache.glob("*openvino*"))  # nothing half-written
    with caplog.at_level(logging.WARNING, logger="rerank_ext_core.cross_encoder"):
        scorer = CrossEncoderScorer(cross_encoder_path, backend="auto", precision="int8")
    assert scorer.backend == "onnxruntime" and "backend='openvino' failed" in caplog.text


def test_bf16_falls_back_to_fp32_where_the_cpu_lacks_it_and_says_why(cross_encoder_path, export_cache, monkeypatch, caplog):
    monkeypatch.setattr(runtimes, "cpu_bf16_support", lambda: (False, "this CPU has neither avx512_bf16 nor amx_bf16"))
    with caplog.at_level(logging.WARNING, logger="rerank_ext_core.runtimes"):
        scorer = CrossEncoderScorer(cross_encoder_path, backend="openvino", precision="bf16")
    assert scorer.precision == "fp32"
    assert "falls back to fp32: this CPU has neither avx512_bf16 nor amx_bf16" in caplog.text
    assert CrossEncoderScorer(cross_encoder_path, backend="openvino").precision == "fp32"  # auto: no bf16 here


def test_auto_precision_is_bf16_on_openvino_where_the_cpu_has_it(cross_encoder_path, export_cache, monkeypatch):
    monkeypatch.setattr(runtimes, "cpu_bf16_support", lambda: (True, "this CPU has avx512_bf16"))
    assert CrossEncoderScorer(cross_encoder_path, backend="openvino").precision == "bf16"
    assert CrossEncoderScorer(cross_encoder_path, backend="sentence-transformers").precision == "fp32"


def test_both_adapters_take_backend_and_precision(cross_encoder_path, export_cache):
    import langchain_rerank_ext as lc
    import llamaindex_rerank_ext as li
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    texts = TEXTS[:8]
    expected = CrossEncoderScorer(cross_encoder_path, backend="openvino", precision="int8").score(QUERY, texts)
    order = sorted(range(len(texts)), key=lambda i: (-expected[i], i))
    li_reranker = li.CrossEncoderReranker(model=cross_encoder_path, backend="openvino", precision="int8")
    nodes = li_reranker.postprocess_nodes([NodeWithScore(node=TextNode(text=t, id_=str(i))) for i, t in enumerate(texts)], query_str=QUERY)
    assert [int(n.node.node_id) for n in nodes] == order
    lc_reranker = lc.CrossEncoderReranker(model=cross_encoder_path, backend="openvino", precision="int8")
    docs = lc_reranker.compress_documents([Document(page_content=t, id=str(i)) for i, t in enumerate(texts)], QUERY)
    assert [int(d.id) for d in docs] == order
    assert Path(li_reranker.scorer._session.folder) == Path(lc_reranker.scorer._session.folder)  # one export


# --------------------------------------------------------------------------- ColBERT encoder
@pytest.fixture
def colbert_reference(colbert_path):
    from rerank_ext_core.colbert import ColBERTScorer

    return np.array(ColBERTScorer(colbert_path, backend="sentence-transformers", precision="fp32", cache_megabytes=0).score(QUERY, TEXTS))


@pytest.mark.parametrize(("backend", "precision", "tolerance", "min_rho"), [
    ("openvino", "fp32", 1e-4, 0.9999),
    ("onnxruntime", "fp32", 1e-4, 0.9999),
    ("sentence-transformers", "bf16", 0.15, 0.99),
    ("openvino", "bf16", 0.15, 0.99),
    ("openvino", "int8", 0.3, 0.98),
    ("onnxruntime", "int8", 0.3, 0.98),
])
def test_colbert_encoder_paths_match_torch(colbert_path, colbert_reference, export_cache, backend, precision, tolerance, min_rho):
    """The Stanford-layout tiny ColBERT ([Q]/[D] markers, a 16-d projection): the export replaces
    only the transformer, so markers, query expansion, the skiplist and the projection still apply.
    MaxSim scores spread with std ~1.8 here; measured max errors: fp32 1e-5, bf16 0.06-0.11,
    int8 0.13-0.20."""
    from rerank_ext_core.colbert import ColBERTScorer

    scorer = ColBERTScorer(colbert_path, backend=backend, precision=precision, cache_megabytes=0)
    assert scorer.precision == precision
    scores = np.array(scorer.score(QUERY, TEXTS))
    assert np.max(np.abs(scores - colbert_reference)) <= tolerance
    assert spearman(scores, colbert_reference) >= min_rho
    if precision != "fp32":
        assert not np.allclose(scores, colbert_reference, atol=1e-6)


def test_colbert_adapters_take_backend_and_precision(colbert_path, export_cache):
    import langchain_rerank_ext as lc
    import llamaindex_rerank_ext as li
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    from rerank_ext_core.colbert import ColBERTScorer

    texts = TEXTS[:8]
    expected = ColBERTScorer(colbert_path, backend="onnxruntime", precision="fp32").score(QUERY, texts)
    order = sorted(range(len(texts)), key=lambda i: (-expected[i], i))
    nodes = li.ColBERTReranker(model=colbert_path, backend="onnxruntime", precision="fp32").postprocess_nodes(
        [NodeWithScore(node=TextNode(text=t, id_=str(i))) for i, t in enumerate(texts)], query_str=QUERY)
    assert [int(n.node.node_id) for n in nodes] == order
    docs = lc.ColBERTReranker(model=colbert_path, backend="onnxruntime", precision="fp32").compress_documents(
        [Document(page_content=t, id=str(i)) for i, t in enumerate(texts)], QUERY)
    assert [int(d.id) for d in docs] == order


def test_colbert_exported_backend_refuses_a_bge_m3_checkpoint(bge_m3_path, export_cache):
    from rerank_ext_core.colbert import ColBERTScorer

    with pytest.raises(ValueError, match="backend='openvino' runs sentence-transformers checkpoints"):
        ColBERTScorer(bge_m3_path, backend="openvino")
