"""One test per bad input that the hostile-input issue and its generated suite found; each failed
on main before the fix (tests/test_hostile_inputs.py generates many more)."""

from __future__ import annotations

import asyncio
import math

import pytest

pytest.importorskip("llama_index.core")
pytest.importorskip("langchain_core")
chromadb = pytest.importorskip("chromadb")

import langchain_rerank_ext as lc  # noqa: E402
import llamaindex_rerank_ext as li  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from llama_index.core.schema import NodeWithScore, TextNode  # noqa: E402

from rerank_ext_core.cross_encoder import CrossEncoderScorer  # noqa: E402
from rerank_ext_core.fusion import fuse  # noqa: E402
from rerank_ext_core.hybrid import ChromaHybridSearch  # noqa: E402
from tests.hybrid_fixtures import ANIMALS, fill, unique_name  # noqa: E402

DOCS = [Document(page_content="Cats eat meat.", id="d0"), Document(page_content="Stocks fell.", id="d1")]
NODES = [NodeWithScore(node=TextNode(text=d.page_content, id_=d.id), score=0.5) for d in DOCS]


@pytest.fixture(scope="module")
def langchain_reranker(cross_encoder_path):
    return lc.CrossEncoderReranker(model=cross_encoder_path, device="cpu")


@pytest.fixture(scope="module")
def llamaindex_reranker(cross_encoder_path):
    return li.CrossEncoderReranker(model=cross_encoder_path, device="cpu")


@pytest.mark.parametrize("query", [None, 5, 2.5, ["cats"], b"cats"])
def test_a_query_that_is_not_a_string_is_a_type_error_in_both_frameworks(langchain_reranker, llamaindex_reranker, query):
    with pytest.raises(TypeError, match="query must be a string"):
        langchain_reranker.compress_documents(DOCS, query)
    with pytest.raises(TypeError, match="query must be a string"):
        asyncio.run(langchain_reranker.acompress_documents(DOCS, query))
    # LlamaIndex's own postprocess_nodes reads query_str=None as "no query given": a ValueError.
    with pytest.raises(ValueError if query is None else TypeError, match="query"):
        llamaindex_reranker.postprocess_nodes(NODES, query_str=query)


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_a_blank_query_returns_no_candidates_in_both_frameworks(langchain_reranker, llamaindex_reranker, query):
    assert langchain_reranker.compress_documents(DOCS, query) == []
    assert llamaindex_reranker.postprocess_nodes(NODES, query_str=query) == []


@pytest.mark.parametrize(("documents", "message"), [
    (["a", "b"], r"documents\[0\] must be a langchain Document, got str"),
    (None, "documents must be a list of langchain Documents, got NoneType"),
    ("cats", "documents must be a list of langchain Documents, got str"),
    ([DOCS[0], {"page_content": "x"}], r"documents\[1\] must be a langchain Document, got dict"),
])
def test_langchain_documents_of_the_wrong_type_name_document(langchain_reranker, documents, message):
    with pytest.raises(TypeError, match=message):
        langchain_reranker.compress_documents(documents, "cats")


@pytest.mark.parametrize("nodes", [["a"], None, [TextNode(text="x")]])
def test_llamaindex_nodes_of_the_wrong_type_name_nodewithscore(llamaindex_reranker, nodes):
    with pytest.raises(TypeError, match="NodeWithScore"):
        llamaindex_reranker.postprocess_nodes(nodes, query_str="cats")


@pytest.mark.parametrize("reranker_class", [lc.CrossEncoderReranker, li.CrossEncoderReranker])
@pytest.mark.parametrize("device", ["gpu9", "cuda:7", "tpu", "cuda"])
def test_an_unknown_or_absent_device_lists_the_accepted_ones(cross_encoder_path, reranker_class, device):
    with pytest.raises(ValueError, match=rf"device='{device}'.*'cpu', 'cuda', 'cuda:N'"):
        reranker_class(model=cross_encoder_path, device=device)


@pytest.mark.parametrize("reranker_class", [lc.CrossEncoderReranker, li.CrossEncoderReranker])
@pytest.mark.parametrize("threshold", [2.0, -0.1, 1.5])
def test_a_threshold_outside_sigmoid_scores_is_refused(cross_encoder_path, reranker_class, threshold):
    with pytest.raises(ValueError, match=rf"score_threshold={threshold}.*\[0.0, 1.0\]"):
        reranker_class(model=cross_encoder_path, score_threshold=threshold)
    assert reranker_class(model=cross_encoder_path, score_threshold=threshold, normalize=False).score_threshold == threshold


@pytest.mark.parametrize(("option", "value"), [("normalize", "no"), ("normalize", 0), ("use_fp16", "yes"),
                                               ("query_instruction", 5), ("trust_remote_code", "false")])
def test_core_scorer_options_are_not_silently_coerced(cross_encoder_path, option, value):
    with pytest.raises(TypeError, match=option):
        CrossEncoderScorer(cross_encoder_path, **{option: value})


@pytest.mark.parametrize(("ranked", "message"), [
    ({"dense": None}, "side 'dense'"),
    ({"dense": [("a", float("inf"))]}, "finite"),
    ({"dense": [("a", "0.5")]}, "finite"),
    ({"dense": [(1.5, 0.5)]}, "ids must be strings"),
    ({"dense": [("a",)]}, r"\(id, score\) pair"),
    ([("a", 1.0)], "ranked must be a dict"),
])
def test_fusion_input_of_the_wrong_shape_is_named(ranked, message):
    with pytest.raises((TypeError, ValueError), match=message):
        fuse(ranked)


@pytest.fixture
def hybrid(embedder):
    collection = chromadb.EphemeralClient().create_collection(unique_name(), embedding_function=embedder)
    fill(collection, embedder)
    return ChromaHybridSearch(collection, embedder=embedder, check_interval=0, id_check_interval=0)


def test_a_huge_k_is_clamped_not_an_overflow(hybrid):
    assert {hit.id for hit in hybrid.query("dogs", k=2**40)} <= set(ANIMALS)


def test_update_of_a_missing_id_leaves_both_sides_alike(hybrid):
    hybrid.update(["ghost"], ["Ghosts haunt castles."])
    assert "ghost" not in hybrid.index
    assert hybrid.collection.get(ids=["ghost"])["ids"] == []
    assert hybrid.query("ghosts castles", k=3) == [] or "ghost" not in {h.id for h in hybrid.query("ghosts castles", k=3)}


@pytest.mark.parametrize(("ids", "message"), [
    (["a1", "a1"], "more than once"), ([""], "blank"), ([5], r"ids\[0\] must be a string"), ("a1", "ids must be a list"),
])
def test_bad_ids_are_refused_before_anything_is_written(hybrid, ids, message):
    before = hybrid.collection.get(include=["documents"])
    with pytest.raises((TypeError, ValueError), match=message):
        hybrid.upsert(ids, ["x"] * (len(ids) if isinstance(ids, list) else 1))
    assert hybrid.collection.get(include=["documents"]) == before
    assert set(hybrid.index.ids()) <= set(before["ids"])


def test_writes_of_non_text_documents_are_refused(hybrid):
    with pytest.raises(TypeError, match=r"documents\[0\] must be a string"):
        hybrid.add(["n1"], [None])
    with pytest.raises(TypeError, match=r"metadatas\[0\]"):
        hybrid.add(["n1"], ["text"], metadatas=["not a dict"])
    assert "n1" not in hybrid.collection.get(include=[])["ids"]


def test_a_non_finite_rrf_k_is_refused_by_both_hybrid_retrievers(hybrid):
    with pytest.raises(ValueError, match="rrf_k=inf"):
        lc.ChromaHybridRetriever(search=hybrid, rrf_k=math.inf)
    with pytest.raises(ValueError, match="rrf_k=inf"):
        li.ChromaHybridRetriever(hybrid, rrf_k=math.inf)


@pytest.mark.parametrize("query", [b"dogs", 5, None, ["dogs"]])
def test_llamaindex_hybrid_retrieve_refuses_a_query_that_is_not_text(hybrid, query):
    retriever = li.ChromaHybridRetriever(hybrid)
    with pytest.raises(TypeError, match="query must be a string or a QueryBundle"):
        retriever.retrieve(query)
    with pytest.raises(TypeError, match="query must be a string or a QueryBundle"):
        asyncio.run(retriever.aretrieve(query))


@pytest.mark.parametrize(("where", "where_document"), [({"year": {"$gt": "x"}}, None), (None, {"$contains": 5})])
def test_an_invalid_chroma_filter_is_named_at_construction_in_both_adapters_and_per_query(hybrid, where, where_document):
    name = "where" if where is not None else "where_document"
    with pytest.raises(ValueError, match=f"{name}=.* is not a valid Chroma filter"):
        hybrid.query("dogs", where=where, where_document=where_document)
    with pytest.raises(ValueError, match=f"{name}=.* is not a valid Chroma filter"):
        li.ChromaHybridRetriever(hybrid, where=where, where_document=where_document)
    with pytest.raises(ValueError, match=f"{name}=.* is not a valid Chroma filter"):
        lc.ChromaHybridRetriever(search=hybrid, where=where, where_document=where_document)


def test_numpy_values_are_accepted_where_python_ones_are(hybrid):
    import numpy as np

    hybrid.add(np.array(["n1", "n2"]), np.array(["Narwhals have tusks.", "Newts are amphibians."]))
    assert {"n1", "n2"} <= set(hybrid.index.ids()) and {"n1", "n2"} <= set(hybrid.collection.get(include=[])["ids"])
    hits = hybrid.query("narwhals tusks", k=np.int64(2), candidates=np.int64(5),
                        weights={"dense": np.float32(0.3), "sparse": np.float32(0.7)})
    assert hits[0].id == "n1" and len(hits) == 2
    fused = fuse({"dense": [(1, np.float32(0.5)), ("b", 0.25)], "sparse": np.array([["b", "0.5"]], dtype=object)[:0]})
    assert [r.id for r in fused] == [1, "b"]
