"""LlamaIndex retriever for hybrid dense + BM25 search over a Chroma collection."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle, QueryType, TextNode
from llama_index.core.vector_stores.utils import metadata_dict_to_node

from rerank_ext_core._validation import check_positive_int
from rerank_ext_core.chroma import check_filter
from rerank_ext_core.hybrid import ChromaHybridSearch, HybridHit

__all__ = ["ChromaHybridRetriever"]

_SCORE_KEYS = ("hybrid_score", "fusion_mode", "dense_score", "sparse_score", "dense_rank", "sparse_rank")


class _LlamaIndexEmbedder:
    """Presents a LlamaIndex embed model as the core's ``embed_query``/``embed_documents``."""

    def __init__(self, embed_model: BaseEmbedding) -> None:
        self.embed_model = embed_model

    def embed_query(self, text: str) -> list[float]:
        return self.embed_model.get_query_embedding(text)

    async def aembed_query(self, text: str) -> list[float]:
        return await self.embed_model.aget_query_embedding(text)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_model.get_text_embedding_batch(list(texts))


def _check_query(query: Any) -> QueryType:
    if not isinstance(query, (str, QueryBundle)):
        msg = f"query must be a string or a QueryBundle, got {type(query).__name__} ({query!r:.60})."
        raise TypeError(msg)
    return query


def _node_from_hit(hit: HybridHit) -> NodeWithScore:
    metadata = hit.metadata
    node: BaseNode
    if "_node_content" in metadata:
        node = metadata_dict_to_node(metadata, text=hit.document)
    else:
        node = TextNode(id_=hit.id, text=hit.document, metadata=metadata)
    scores = hit.score_metadata()
    node.metadata = {**node.metadata, **scores}
    node.excluded_embed_metadata_keys = sorted(set(node.excluded_embed_metadata_keys) | set(scores))
    node.excluded_llm_metadata_keys = sorted(set(node.excluded_llm_metadata_keys) | set(scores))
    return NodeWithScore(node=node, score=hit.score)


class ChromaHybridRetriever(BaseRetriever):
    """Hybrid dense + BM25 retrieval over a Chroma collection, following the collection.

    Build it with :meth:`from_collection`, :meth:`from_vector_store` or :meth:`from_index`. Nodes
    written by LlamaIndex (``ChromaVectorStore``) come back whole: text, metadata, relationships.
    Each ``NodeWithScore`` carries the fused score, and its node's metadata holds ``dense_score``,
    ``sparse_score``, their ranks and ``fusion_mode`` (excluded from embed/LLM metadata).

    Args:
        search: the core engine.
        similarity_top_k: how many nodes to return.
        where, where_document: Chroma filters applied to both sides.
        fusion, weights, rrf_k: per-retriever overrides of the engine's fusion settings.
    """

    def __init__(
        self,
        search: ChromaHybridSearch,
        *,
        similarity_top_k: int = 10,
        where: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
        fusion: str | None = None,
        weights: dict[str, float] | None = None,
        rrf_k: float | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        if not isinstance(search, ChromaHybridSearch):
            msg = f"search must be a ChromaHybridSearch, got {type(search).__name__}; use from_collection()."
            raise TypeError(msg)
        self.search = search
        self.similarity_top_k = check_positive_int("similarity_top_k", similarity_top_k)
        self._filters = {
            "where": check_filter("where", where), "where_document": check_filter("where_document", where_document),
        }
        self._options = search.query_options(fusion=fusion, weights=weights, rrf_k=rrf_k)
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @classmethod
    def class_name(cls) -> str:
        return "ChromaHybridRetriever"

    @classmethod
    def from_collection(
        cls,
        collection: Any,
        embed_model: BaseEmbedding | None = None,
        *,
        similarity_top_k: int = 10,
        where: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        **search_options: Any,
    ) -> ChromaHybridRetriever:
        """From a chromadb collection. ``embed_model`` embeds queries (None: the collection's
        embedding function); ``search_options`` go to :class:`ChromaHybridSearch` (fusion, weights,
        tokenizer, candidates, index_dir, async_collection, ...)."""
        embedder = _LlamaIndexEmbedder(embed_model) if embed_model is not None else None
        search = ChromaHybridSearch(collection, embedder=embedder, **search_options)
        return cls(
            search, similarity_top_k=similarity_top_k, where=where, where_document=where_document,
            callback_manager=callback_manager,
        )

    @classmethod
    def from_vector_store(
        cls, vector_store: Any, embed_model: BaseEmbedding | None = None, **options: Any
    ) -> ChromaHybridRetriever:
        """From a LlamaIndex ``ChromaVectorStore``; ``embed_model`` defaults to ``Settings.embed_model``."""
        collection = getattr(vector_store, "_collection", None)
        if collection is None:
            msg = f"vector_store must be a ChromaVectorStore, got {type(vector_store).__name__}."
            raise TypeError(msg)
        if embed_model is None:
            from llama_index.core import Settings

            embed_model = Settings.embed_model
        return cls.from_collection(collection, embed_model, **options)

    @classmethod
    def from_index(cls, index: Any, **options: Any) -> ChromaHybridRetriever:
        """From a ``VectorStoreIndex`` over a ``ChromaVectorStore``, with the index's embed model."""
        vector_store = getattr(index, "vector_store", None)
        if vector_store is None or getattr(vector_store, "_collection", None) is None:
            msg = (
                f"index must be a VectorStoreIndex over a ChromaVectorStore, got {type(index).__name__} "
                f"over {type(vector_store).__name__}."
            )
            raise TypeError(msg)
        options.setdefault("embed_model", getattr(index, "_embed_model", None))
        return cls.from_vector_store(vector_store, **options)

    def refresh(self) -> None:
        """Bring the BM25 side fully up to date with the collection now."""
        self.search.refresh()

    def close(self) -> None:
        """Stop the background refresher and worker threads (garbage collection also stops them)."""
        self.search.close()

    # LlamaIndex's own retrieve() reads any non-string as a QueryBundle and fails with an
    # AttributeError on .query_str: refuse what is neither, naming the argument.
    def retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        return super().retrieve(_check_query(str_or_query_bundle))

    async def aretrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        return await super().aretrieve(_check_query(str_or_query_bundle))

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.search.query(query_bundle.query_str, self.similarity_top_k, options=self._options, **self._filters)
        return [_node_from_hit(hit) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = await self.search.aquery(
            query_bundle.query_str, self.similarity_top_k, options=self._options, **self._filters
        )
        return [_node_from_hit(hit) for hit in hits]
