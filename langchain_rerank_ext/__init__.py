"""LangChain document compressors and retrievers built on rerank_ext_core."""

from langchain_rerank_ext.hybrid import ChromaHybridRetriever
from langchain_rerank_ext.rerankers import ColBERTReranker, CrossEncoderReranker

__all__ = ["ChromaHybridRetriever", "ColBERTReranker", "CrossEncoderReranker"]
