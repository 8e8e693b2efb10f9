"""LangChain document compressors: ``CrossEncoderReranker`` and ``ColBERTReranker``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Optional

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict

from rerank_ext_core._validation import check_items
from rerank_ext_core.rerank import RankedText
from rerank_ext_core.reranker_fields import ColBERTFields, CrossEncoderFields, RerankerFields

__all__ = ["ColBERTReranker", "CrossEncoderReranker"]

RELEVANCE_SCORE_KEY = "relevance_score"
RETRIEVAL_SCORE_KEY = "retrieval_score"
RERANKER_SCORE_KEY = "reranker_score"


def _reranked_document(original: Document, ranked: RankedText, keep_retrieval_score: bool) -> Document:
    """A copy of the document whose metadata (a new dict) carries the relevance score."""
    metadata = dict(original.metadata)
    if keep_retrieval_score and RELEVANCE_SCORE_KEY in metadata:
        metadata[RETRIEVAL_SCORE_KEY] = metadata[RELEVANCE_SCORE_KEY]
    metadata[RELEVANCE_SCORE_KEY] = ranked.score
    if ranked.reranker_score is not None:  # the score is a blend: keep the reranker's own beside it
        metadata[RERANKER_SCORE_KEY] = ranked.reranker_score
    return Document(page_content=original.page_content, metadata=metadata, id=original.id)


class _RerankCompressor(RerankerFields, BaseDocumentCompressor):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Optional[Callbacks] = None
    ) -> Sequence[Document]:
        documents = check_items("documents", documents, Document, "langchain Document")
        ranked = self._rank(
            query, [doc.page_content for doc in documents],
            [doc.metadata.get(RELEVANCE_SCORE_KEY) for doc in documents],
        )
        return [_reranked_document(documents[r.index], r, self.keep_retrieval_score) for r in ranked]

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Optional[Callbacks] = None
    ) -> Sequence[Document]:
        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)


class CrossEncoderReranker(CrossEncoderFields, _RerankCompressor):
    """Rerank documents with a cross-encoder; each returned copy has ``metadata['relevance_score']``.

    Use in ``ContextualCompressionRetriever(base_compressor=CrossEncoderReranker(...), base_retriever=...)``.
    Scores are sigmoid probabilities unless ``normalize=False``.
    """


class ColBERTReranker(ColBERTFields, _RerankCompressor):
    """Rerank documents with ColBERT late interaction (MaxSim): colbertv2.0, PyLate, BGE-M3, or a plain encoder."""
