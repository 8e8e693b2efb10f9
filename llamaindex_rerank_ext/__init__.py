"""LlamaIndex node postprocessors and retrievers built on rerank_ext_core."""

from llamaindex_rerank_ext.hybrid import ChromaHybridRetriever

__all__ = ["ChromaHybridRetriever"]
