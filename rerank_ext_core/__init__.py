"""rerank-ext's framework-neutral engine: scoring, batching, BM25, fusion and Chroma access."""

from rerank_ext_core._models import ModelNotFoundError
from rerank_ext_core.bm25 import BM25Index
from rerank_ext_core.chroma import ChromaUnavailableError
from rerank_ext_core.colbert import ColBERTScorer, maxsim_scores
from rerank_ext_core.cross_encoder import CrossEncoderScorer
from rerank_ext_core.embedding import ChromaEmbeddingFunction, SentenceTransformerEmbedder, TextEmbedder
from rerank_ext_core.fusion import (
    FUSION_MODES,
    FusedResult,
    distribution_based_score_fusion,
    fuse,
    reciprocal_rank_fusion,
    relative_score_fusion,
)
from rerank_ext_core.hybrid import ChromaHybridSearch, HybridHit, QueryOptions
from rerank_ext_core.rerank import RankedText, Scorer, rerank
from rerank_ext_core.tokenization import Tokenizer

__all__ = [
    "BM25Index",
    "ChromaEmbeddingFunction",
    "ChromaHybridSearch",
    "ChromaUnavailableError",
    "ColBERTScorer",
    "CrossEncoderScorer",
    "FUSION_MODES",
    "FusedResult",
    "HybridHit",
    "ModelNotFoundError",
    "QueryOptions",
    "RankedText",
    "Scorer",
    "SentenceTransformerEmbedder",
    "TextEmbedder",
    "Tokenizer",
    "distribution_based_score_fusion",
    "fuse",
    "maxsim_scores",
    "reciprocal_rank_fusion",
    "relative_score_fusion",
    "rerank",
]
