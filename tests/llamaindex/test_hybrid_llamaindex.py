from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("llama_index.vector_stores.chroma")
chromadb = pytest.importorskip("chromadb")

from llama_index.core import StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402
from llama_index.core.retrievers import QueryFusionRetriever  # noqa: E402
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode  # noqa: E402
from llama_index.vector_stores.chroma import ChromaVectorStore  # noqa: E402

from llamaindex_rerank_ext import ChromaHybridRetriever  # noqa: E402
from tests.hybrid_fixtures import ANIMALS, HashEmbedder, fill, unique_name  # noqa: E402


class HashEmbedding(BaseEmbedding):
    def _get_query_embedding(self, query: str) -> list[float]:
        return HashEmbedder().embed_query(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return HashEmbedder().embed_documents([text])[0]


@pytest.fixture
def llama_index_over_chroma():
    client = chromadb.EphemeralClient()
    collection = client.create_collection(unique_name(), embedding_function=HashEmbedder())
    nodes = [
        TextNode(
            id_=doc_id,
            text=text,
            metadata=dict(metadata),
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"source-{doc_id}")},
        )
        for doc_id, (text, metadata) in ANIMALS.items()
    ]
    store = ChromaVectorStore(chroma_collection=collection)
    index = VectorStoreIndex(
        nodes, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=HashEmbedding()
    )
    return index, store, collection


def test_from_index_reads_what_llamaindex_wrote(llama_index_over_chroma):
    index, _, _ = llama_index_over_chroma
    retriever = ChromaHybridRetriever.from_index(index, similarity_top_k=3)
    results = retriever.retrieve("dogs enjoy long walks")
    assert len(results) == 3
    top = results[0]
    assert top.node.node_id == "a2"
    assert top.node.get_content() == ANIMALS["a2"][0]
    assert top.node.ref_doc_id == "source-a2"  # relationships survive
    assert top.node.metadata["topic"] == "animals"
    assert top.node.metadata["dense_score"] is not None and top.node.metadata["sparse_score"] > 0
    assert top.node.metadata["fusion_mode"] == "dist_based_score"
    assert top.node.metadata["dense_rank"] == 1
    assert top.score == pytest.approx(top.node.metadata["hybrid_score"])
    assert "sparse_score" not in top.node.get_content(metadata_mode="llm")


def test_from_vector_store_and_collection_with_filters(llama_index_over_chroma):
    _, store, collection = llama_index_over_chroma
    by_store = ChromaHybridRetriever.from_vector_store(store, HashEmbedding(), similarity_top_k=2,
                                                       where={"topic": "food"})
    assert {r.node.node_id for r in by_store.retrieve("coffee dogs")} == {"f1", "f2"}
    by_collection = ChromaHybridRetriever.from_collection(collection, HashEmbedding(), similarity_top_k=1,
                                                          fusion="rrf")
    result = by_collection.retrieve("parrots speech")[0]
    assert result.node.node_id == "a3" and result.node.metadata["fusion_mode"] == "rrf"


def test_plain_chroma_records_become_text_nodes(embedder):
    collection = chromadb.EphemeralClient().create_collection(unique_name(), embedding_function=embedder)
    fill(collection, embedder)
    retriever = ChromaHybridRetriever.from_collection(collection, HashEmbedding(), similarity_top_k=1)
    node = retriever.retrieve("rust memory safety")[0].node
    assert node.node_id == "s2" and node.text == ANIMALS["s2"][0] and node.metadata["year"] == 2021


def test_follows_inserts_and_deletes_made_through_llamaindex(llama_index_over_chroma):
    index, _, _ = llama_index_over_chroma
    retriever = ChromaHybridRetriever.from_index(index, similarity_top_k=1, check_interval=0, id_check_interval=0)
    retriever.retrieve("dogs")
    index.insert_nodes([TextNode(id_="n1", text="Narwhals have a spiral tusk.")])
    top = retriever.retrieve("narwhals spiral tusk")[0]
    assert top.node.node_id == "n1" and top.node.metadata["sparse_rank"] == 1
    index.delete_nodes(["n1"])
    assert all(r.node.node_id != "n1" for r in retriever.retrieve("narwhals tusk"))


def test_async_retrieve_and_query_fusion_and_query_engine(llama_index_over_chroma):
    index, _, _ = llama_index_over_chroma
    retriever = ChromaHybridRetriever.from_index(index, similarity_top_k=2)
    results = asyncio.run(retriever.aretrieve("espresso coffee"))
    assert results[0].node.node_id == "f2"
    fusion = QueryFusionRetriever([retriever], llm=MockLLM(), num_queries=1, similarity_top_k=2, use_async=True)
    assert fusion.retrieve("espresso coffee")[0].node.node_id == "f2"
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query("espresso coffee")
    assert response.source_nodes[0].node.node_id == "f2"


def test_bad_arguments():
    with pytest.raises(TypeError, match="ChromaVectorStore"):
        ChromaHybridRetriever.from_vector_store(object())
    with pytest.raises(TypeError, match="ChromaHybridSearch"):
        ChromaHybridRetriever(search=None)
