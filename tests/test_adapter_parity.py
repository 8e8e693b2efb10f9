"""Two adapters, one meaning: the same options, the same defaults, the same refusals at the same
moment, and one rule for where the first-stage score goes."""

from __future__ import annotations

import inspect
import math

import pytest

pytest.importorskip("llama_index.core")
pytest.importorskip("langchain_core")
chromadb = pytest.importorskip("chromadb")

import langchain_rerank_ext as lc  # noqa: E402
import llamaindex_rerank_ext as li  # noqa: E402
from llama_index.core.schema import QueryBundle  # noqa: E402

from rerank_ext_core.colbert import ColBERTScorer  # noqa: E402
from rerank_ext_core.cross_encoder import CrossEncoderScorer  # noqa: E402
from rerank_ext_core.hybrid import ChromaHybridSearch  # noqa: E402
from tests.hybrid_fixtures import HashEmbedder, fill, unique_name  # noqa: E402

PAIRS = [
    (CrossEncoderScorer, li.CrossEncoderReranker, lc.CrossEncoderReranker),
    (ColBERTScorer, li.ColBERTReranker, lc.ColBERTReranker),
]


def _scorer_defaults(scorer_class) -> dict:
    parameters = inspect.signature(scorer_class.__init__).parameters
    return {name: p.default for name, p in parameters.items() if name != "self"}


@pytest.mark.parametrize(("scorer_class", "llamaindex_class", "langchain_class"), PAIRS)
def test_every_scorer_option_is_a_field_with_the_same_default_in_both_adapters(
    scorer_class, llamaindex_class, langchain_class
):
    defaults = _scorer_defaults(scorer_class)
    assert len(defaults) >= 10
    for adapter in (llamaindex_class, langchain_class):
        fields = adapter.model_fields
        assert {name: fields[name].default for name in defaults} == defaults, adapter
        assert all(fields[name].description for name in defaults), "every option is documented"


@pytest.mark.parametrize(("scorer_class", "llamaindex_class", "langchain_class"), PAIRS)
def test_the_built_scorer_receives_every_option(scorer_class, llamaindex_class, langchain_class, monkeypatch):
    received: list[dict] = []
    record = staticmethod(lambda **options: received.append(options))
    monkeypatch.setattr(llamaindex_class, "scorer_class", record)
    monkeypatch.setattr(langchain_class, "scorer_class", record)
    llamaindex_class(batch_size=7)
    langchain_class(batch_size=7)
    expected = {**_scorer_defaults(scorer_class), "batch_size": 7}
    assert received == [expected, expected]


def _search():
    embedder = HashEmbedder()
    collection = chromadb.EphemeralClient().create_collection(unique_name(), embedding_function=embedder)
    fill(collection, embedder)
    return ChromaHybridSearch(collection, embedder=embedder)


BAD_HYBRID_OPTIONS = [
    ({"fusion": "max"}, "Unknown fusion mode 'max'"),
    ({"weights": {"dense": -1, "sparse": 1}}, "negative"),
    ({"weights": {"bm25": 1}}, "unknown sides"),
    ({"rrf_k": math.inf}, "rrf_k=inf is invalid"),
    ({"rrf_k": -1.5}, "rrf_k=-1.5 is invalid"),
    ({"rrf_k": "60"}, "rrf_k"),
    ({"weights": "dense"}, "weights"),
]


@pytest.mark.parametrize(("options", "message"), BAD_HYBRID_OPTIONS)
def test_both_hybrid_retrievers_refuse_the_same_options_at_construction(options, message):
    search = _search()
    with pytest.raises((ValueError, TypeError), match=message):
        li.ChromaHybridRetriever(search, **options)
    with pytest.raises((ValueError, TypeError), match=message):
        lc.ChromaHybridRetriever(search=search, **options)


def test_both_hybrid_retrievers_refuse_a_bad_k_at_construction_and_per_query():
    search = _search()
    with pytest.raises(ValueError, match="similarity_top_k=0"):
        li.ChromaHybridRetriever(search, similarity_top_k=0)
    with pytest.raises(ValueError, match="k=0"):
        lc.ChromaHybridRetriever(search=search, k=0)
    with pytest.raises(ValueError, match="k=-2"):
        lc.ChromaHybridRetriever(search=search).invoke("dogs", k=-2)


def test_hybrid_then_reranker_keeps_the_first_stage_score_in_both_frameworks(cross_encoder_path):
    """The first-stage score is where each framework keeps a result's score (NodeWithScore.score,
    metadata['relevance_score']); the reranker moves it to metadata['retrieval_score']."""
    search = _search()
    query = "dogs walks companions"

    nodes = li.ChromaHybridRetriever(search, similarity_top_k=5).retrieve(query)
    li_first = {n.node.node_id: n.score for n in nodes}
    reranked_nodes = li.CrossEncoderReranker(model=cross_encoder_path).postprocess_nodes(
        nodes, QueryBundle(query_str=query)
    )
    docs = lc.ChromaHybridRetriever(search=search, k=5).invoke(query)
    lc_first = {d.id: d.metadata["relevance_score"] for d in docs}
    reranked_docs = lc.CrossEncoderReranker(model=cross_encoder_path).compress_documents(docs, query)

    assert li_first == pytest.approx(lc_first) and len(li_first) == 5
    assert {n.node.node_id: n.node.metadata["retrieval_score"] for n in reranked_nodes} == pytest.approx(li_first)
    assert {d.id: d.metadata["retrieval_score"] for d in reranked_docs} == pytest.approx(lc_first)
    assert [n.node.node_id for n in reranked_nodes] == [d.id for d in reranked_docs]
    assert [n.score for n in reranked_nodes] == pytest.approx([d.metadata["relevance_score"] for d in reranked_docs])

    without_nodes = li.CrossEncoderReranker(model=cross_encoder_path, keep_retrieval_score=False).postprocess_nodes(
        nodes, QueryBundle(query_str=query)
    )
    without_docs = lc.CrossEncoderReranker(model=cross_encoder_path, keep_retrieval_score=False).compress_documents(
        docs, query
    )
    assert not any("retrieval_score" in n.node.metadata for n in without_nodes)
    assert not any("retrieval_score" in d.metadata for d in without_docs)
