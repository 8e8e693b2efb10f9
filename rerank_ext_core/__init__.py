"""rerank-ext's framework-neutral engine: scoring, batching, BM25, fusion and Chroma access."""

from rerank_ext_core._models import ModelNotFoundError
from rerank_ext_core.rerank import RankedText, Scorer, rerank

__all__ = ["ModelNotFoundError", "RankedText", "Scorer", "rerank"]
