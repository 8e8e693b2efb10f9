"""LlamaIndex node postprocessors and retrievers built on rerank_ext_core."""

from rerank_ext_core._optional import require

require("llama_index.core", feature="llamaindex_rerank_ext", extra="llamaindex")

from llamaindex_rerank_ext.hybrid import ChromaHybridRetriever
from llamaindex_rerank_ext.rerankers import ColBERTReranker, CrossEncoderReranker

__all__ = ["ChromaHybridRetriever", "ColBERTReranker", "CrossEncoderReranker"]
