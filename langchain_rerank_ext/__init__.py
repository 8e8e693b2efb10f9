"""LangChain document compressors and retrievers built on rerank_ext_core."""

from langchain_rerank_ext.hybrid import ChromaHybridRetriever

__all__ = ["ChromaHybridRetriever"]
