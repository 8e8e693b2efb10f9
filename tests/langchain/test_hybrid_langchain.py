from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("langchain_chroma")
pytest.importorskip("langchain_tests")
chromadb = pytest.importorskip("chromadb")

from langchain_chroma import Chroma  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from langchain_tests.integration_tests import RetrieversIntegrationTests  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from langchain_rerank_ext import ChromaHybridRetriever  # noqa: E402
from rerank_ext_core.hybrid import ChromaHybridSearch  # noqa: E402
from tests.hybrid_fixtures import ANIMALS, HashEmbedder, fill, unique_name  # noqa: E402


class HashEmbeddings(Embeddings):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return HashEmbedder().embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return HashEmbedder().embed_query(text)


def _search() -> ChromaHybridSearch:
    embedder = HashEmbedder()
    collection = chromadb.EphemeralClient().create_collection(unique_name(), embedding_function=embedder)
    fill(collection, embedder)
    return ChromaHybridSearch(collection, embedder=HashEmbeddings())


class TestChromaHybridRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[ChromaHybridRetriever]:
        return ChromaHybridRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"search": _search()}

    @property
    def retriever_query_example(self) -> str:
        return "animals that are pets"


@pytest.fixture
def store():
    return Chroma(collection_name=unique_name(), embedding_function=HashEmbeddings(),
                  client=chromadb.EphemeralClient())


def test_from_vectorstore_documents_carry_ids_and_scores(store):
    ids = list(ANIMALS)
    store.add_texts([ANIMALS[i][0] for i in ids], metadatas=[ANIMALS[i][1] for i in ids], ids=ids)
    retriever = ChromaHybridRetriever.from_vectorstore(store, k=2)
    docs = retriever.invoke("dogs enjoy long walks")
    assert len(docs) == 2
    assert docs[0].id == "a2" and docs[0].page_content == ANIMALS["a2"][0]
    assert docs[0].metadata["topic"] == "animals"
    assert docs[0].metadata["sparse_rank"] == 1 and docs[0].metadata["dense_score"] is not None
    assert docs[0].metadata["fusion_mode"] == "dist_based_score"
    assert len(retriever.invoke("dogs", k=5)) == 5
    assert {d.id for d in retriever.invoke("dogs coffee", k=5, where={"topic": "food"})} == {"f1", "f2"}


def test_follows_writes_made_through_langchain_chroma(store):
    store.add_texts(["Cats purr."], ids=["c"])
    retriever = ChromaHybridRetriever.from_vectorstore(store, k=1, check_interval=0, id_check_interval=0)
    assert retriever.invoke("cats")[0].id == "c"
    store.add_texts(["Okapis live in the Congo rainforest."], ids=["o"])
    top = retriever.invoke("okapis congo")[0]
    assert top.id == "o" and top.metadata["sparse_rank"] == 1
    store.delete(ids=["o"])
    assert [d.id for d in retriever.invoke("okapis congo", k=5)] == ["c"]


def test_config_is_strict():
    with pytest.raises(ValidationError):
        ChromaHybridRetriever(search=_search(), top_k=3)
    with pytest.raises(ValidationError):
        ChromaHybridRetriever(search=_search(), k=0)
    with pytest.raises(ValidationError, match="Unknown fusion mode"):
        ChromaHybridRetriever(search=_search(), fusion="max")
    with pytest.raises(ValidationError, match="negative"):
        ChromaHybridRetriever(search=_search(), weights={"dense": -1, "sparse": 1})
    with pytest.raises(TypeError):
        ChromaHybridRetriever(search=_search()).invoke("dogs", top_k=2)
    with pytest.raises(TypeError, match="langchain_chroma.Chroma"):
        ChromaHybridRetriever.from_vectorstore(object())


def test_async_and_lcel():
    retriever = ChromaHybridRetriever(search=_search(), k=1)
    docs = asyncio.run(retriever.ainvoke("espresso coffee"))
    assert docs[0].id == "f2"
    chain = retriever | RunnableLambda(lambda documents: [d.id for d in documents])
    assert chain.invoke("rust memory safety") == ["s2"]


def test_returned_metadata_is_a_copy():
    retriever = ChromaHybridRetriever(search=_search(), k=1)
    first = retriever.invoke("parrots")[0]
    first.metadata["topic"] = "changed"
    assert retriever.invoke("parrots")[0].metadata["topic"] == "animals"
    assert isinstance(first, Document)


def test_chains_with_our_reranker_in_contextual_compression_and_lcel(minilm_path, tmp_path):
    pytest.importorskip("torch")
    from langchain_classic.retrievers import ContextualCompressionRetriever

    from langchain_rerank_ext import CrossEncoderReranker
    from tests.checkpoints import build_cross_encoder

    checkpoint = build_cross_encoder(minilm_path, tmp_path / "ce")
    reranker = CrossEncoderReranker(model=str(checkpoint), top_n=2, keep_retrieval_score=True)
    retriever = ChromaHybridRetriever(search=_search(), k=5)
    compression = ContextualCompressionRetriever(base_compressor=reranker, base_retriever=retriever)
    docs = compression.invoke("animals dogs cats parrots")
    assert len(docs) == 2
    candidates = {d.id for d in retriever.invoke("animals dogs cats parrots")}
    for doc in docs:
        assert doc.id in candidates
        assert "relevance_score" in doc.metadata and "hybrid_score" in doc.metadata
        assert "dense_score" in doc.metadata
        assert doc.metadata["retrieval_score"] == doc.metadata["hybrid_score"]  # keep_retrieval_score
    chain = retriever | RunnableLambda(
        lambda documents: reranker.compress_documents(documents, "animals dogs cats parrots")
    )
    assert [d.id for d in chain.invoke("animals dogs cats parrots")] == [d.id for d in docs]


def test_every_client_kind_end_to_end(any_client):
    store = Chroma(collection_name=unique_name(), embedding_function=HashEmbeddings(), client=any_client)
    ids = list(ANIMALS)
    store.add_texts([ANIMALS[i][0] for i in ids], metadatas=[ANIMALS[i][1] for i in ids], ids=ids)
    retriever = ChromaHybridRetriever.from_vectorstore(store, k=2)
    assert retriever.invoke("parrots imitate speech")[0].id == "a3"
    store.add_texts(["Hedgehogs eat insects and snails."], ids=["n1"])
    retriever.refresh()
    assert retriever.invoke("hedgehogs snails", k=1)[0].id == "n1"
    assert asyncio.run(retriever.ainvoke("hedgehogs snails"))[0].id == "n1"
