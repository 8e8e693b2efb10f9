"""LlamaIndex node postprocessors and retrievers built on rerank_ext_core."""

from llamaindex_rerank_ext.hybrid import ChromaHybridRetriever
from llamaindex_rerank_ext.rerankers import ColBERTReranker, CrossEncoderReranker

__all__ = ["ChromaHybridRetriever", "ColBERTReranker", "CrossEncoderReranker"]
