"""LangChain retriever for hybrid dense + BM25 search over a Chroma collection."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from rerank_ext_core._validation import check_positive_int
from rerank_ext_core.chroma import check_filter
from rerank_ext_core.hybrid import ChromaHybridSearch, HybridHit, QueryOptions

__all__ = ["ChromaHybridRetriever"]

# Where LangChain keeps a result's score (what a compressor such as our CrossEncoderReranker
# reads as the first-stage score and moves to "retrieval_score").
RELEVANCE_SCORE_KEY = "relevance_score"


def _document_from_hit(hit: HybridHit) -> Document:
    metadata = {**hit.metadata, **hit.score_metadata(), RELEVANCE_SCORE_KEY: hit.score}
    return Document(id=hit.id, page_content=hit.document, metadata=metadata)


class ChromaHybridRetriever(BaseRetriever):
    """Hybrid dense + BM25 retrieval over a Chroma collection, following the collection.

    Build it with :meth:`from_collection` or :meth:`from_vectorstore` (a ``langchain_chroma.Chroma``),
    or pass a :class:`~rerank_ext_core.hybrid.ChromaHybridSearch` as ``search``. Each Document has
    its Chroma id as ``id`` and a copy of its metadata plus ``hybrid_score``, ``dense_score``,
    ``sparse_score``, their ranks and ``fusion_mode``. ``k``, ``where`` and ``where_document`` can
    also be given to ``invoke``.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    search: ChromaHybridSearch = Field(description="The core hybrid engine over one collection.")
    # strict: no coercion before the core's checks, so both adapters refuse the same values.
    k: int = Field(default=4, strict=True, description="How many documents to return.")
    where: dict[str, Any] | None = Field(default=None, description="Chroma metadata filter, both sides.")
    where_document: dict[str, Any] | None = Field(default=None, description="Chroma document filter, both sides.")
    fusion: str | None = Field(default=None, description="Fusion mode override: rrf, relative_score, dist_based_score.")
    weights: dict[str, float] | None = Field(default=None, description="Per-side weights, keys 'dense' and 'sparse'.")
    rrf_k: float | None = Field(default=None, strict=True, description="RRF constant override.")
    _options: QueryOptions = PrivateAttr()

    @model_validator(mode="after")
    def _check_options(self) -> ChromaHybridRetriever:
        """The same core checks as the LlamaIndex retriever, once, at construction."""
        check_positive_int("k", self.k)
        check_filter("where", self.where)
        check_filter("where_document", self.where_document)
        self._options = self.search.query_options(fusion=self.fusion, weights=self.weights, rrf_k=self.rrf_k)
        return self

    @classmethod
    def from_collection(
        cls,
        collection: Any,
        embedding: Embeddings | None = None,
        *,
        k: int = 4,
        where: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
        **search_options: Any,
    ) -> ChromaHybridRetriever:
        """From a chromadb collection; ``embedding`` embeds queries (None: the collection's
        embedding function). ``search_options`` go to :class:`ChromaHybridSearch`."""
        search = ChromaHybridSearch(collection, embedder=embedding, **search_options)
        return cls(search=search, k=k, where=where, where_document=where_document)

    @classmethod
    def from_vectorstore(cls, vectorstore: Any, **options: Any) -> ChromaHybridRetriever:
        """From a ``langchain_chroma.Chroma`` store, with its embedding function."""
        collection = getattr(vectorstore, "_collection", None)
        if collection is None:
            msg = f"vectorstore must be a langchain_chroma.Chroma, got {type(vectorstore).__name__}."
            raise TypeError(msg)
        options.setdefault("embedding", getattr(vectorstore, "embeddings", None))
        return cls.from_collection(collection, **options)

    def refresh(self) -> None:
        """Bring the BM25 side fully up to date with the collection now."""
        self.search.refresh()

    def close(self) -> None:
        """Stop the background refresher and worker threads (garbage collection also stops them)."""
        self.search.close()

    def _query_arguments(
        self, k: int | None, where: dict[str, Any] | None, where_document: dict[str, Any] | None
    ) -> dict[str, Any]:
        return {
            "k": self.k if k is None else k,
            "where": self.where if where is None else where,
            "where_document": self.where_document if where_document is None else where_document,
            "options": self._options,
        }

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        where: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
    ) -> list[Document]:
        hits = self.search.query(query, **self._query_arguments(k, where, where_document))
        return [_document_from_hit(hit) for hit in hits]

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        where: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
    ) -> list[Document]:
        hits = await self.search.aquery(query, **self._query_arguments(k, where, where_document))
        return [_document_from_hit(hit) for hit in hits]
