"""LangChain document compressors and retrievers built on rerank_ext_core."""

from langchain_rerank_ext.rerankers import ColBERTReranker, CrossEncoderReranker

__all__ = ["ColBERTReranker", "CrossEncoderReranker"]
