"""Pydantic field groups shared by the LlamaIndex and LangChain reranker classes.

Both frameworks build their components on pydantic v2, so each adapter class inherits one of these
groups beside its framework base class: the options, their defaults, their validation and the
scorer they build are defined once, here. Nothing in this module imports a framework.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from rerank_ext_core._passages import LongDocuments
from rerank_ext_core.colbert import DEFAULT_COLBERT, ColBERTBackend
from rerank_ext_core.cross_encoder import DEFAULT_CROSS_ENCODER, CrossEncoderBackend
from rerank_ext_core.rerank import RankedText, Scorer, rerank, validate_score_threshold, validate_top_n

__all__ = ["ColBERTFields", "CrossEncoderFields", "RerankerFields"]

logger = logging.getLogger(__name__)


class RerankerFields(BaseModel):
    """What every reranker adapter has: how many to keep, a threshold, and its loaded scorer."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    top_n: Optional[int] = Field(
        default=None, description="How many candidates to return, best first; None keeps them all."
    )
    score_threshold: Optional[float] = Field(
        default=None, description="Drop candidates scoring below this (on the scorer's documented scale)."
    )
    keep_retrieval_score: bool = Field(
        default=True,
        description="Keep the first-stage score in metadata['retrieval_score'] beside the new score.",
    )
    _scorer: Any = PrivateAttr(default=None)

    @field_validator("top_n")
    @classmethod
    def _check_top_n(cls, value: Optional[int]) -> Optional[int]:
        return validate_top_n(value)

    @field_validator("score_threshold")
    @classmethod
    def _check_score_threshold(cls, value: Optional[float]) -> Optional[float]:
        return validate_score_threshold(value)

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self._scorer = self._build_scorer()

    def _build_scorer(self) -> Scorer:
        raise NotImplementedError

    @property
    def scorer(self) -> Scorer:
        return self._scorer

    def _rank(self, query: str, texts: Sequence[str]) -> list[RankedText]:
        return rerank(self._scorer, query, texts, top_n=self.top_n, score_threshold=self.score_threshold)


class CrossEncoderFields(RerankerFields):
    model: str = Field(
        default=DEFAULT_CROSS_ENCODER, description="Cross-encoder hub id (cached locally when offline) or local directory."
    )
    backend: CrossEncoderBackend = Field(
        default="auto", description="'sentence-transformers', 'flag', or 'auto' (first installed)."
    )
    device: Optional[str] = Field(default=None, description="'cpu', 'cuda', 'cuda:1', 'mps'; None picks the best.")
    batch_size: int = Field(default=32, description="(query, text) pairs per forward pass.")
    max_length: int = Field(default=512, description="Tokens per (query, text) pair.")
    normalize: bool = Field(default=True, description="Sigmoid probabilities (True) or raw logits (False).")
    use_fp16: Optional[bool] = Field(default=None, description="Half precision; None means on a GPU only.")
    query_instruction: Optional[str] = Field(default=None, description="Text prepended to every query.")
    long_documents: LongDocuments = Field(
        default="truncate", description="'truncate' or 'split' (score overlapping passages, keep the best)."
    )
    passage_overlap: int = Field(default=64, description="Tokens shared by consecutive passages when splitting.")
    trust_remote_code: bool = Field(default=False, description="Allow custom model code from the checkpoint.")

    def _build_scorer(self) -> Scorer:
        from rerank_ext_core.cross_encoder import CrossEncoderScorer

        return CrossEncoderScorer(
            self.model,
            backend=self.backend,
            device=self.device,
            batch_size=self.batch_size,
            max_length=self.max_length,
            normalize=self.normalize,
            use_fp16=self.use_fp16,
            query_instruction=self.query_instruction,
            long_documents=self.long_documents,
            passage_overlap=self.passage_overlap,
            trust_remote_code=self.trust_remote_code,
        )


class ColBERTFields(RerankerFields):
    model: str = Field(
        default=DEFAULT_COLBERT, description="ColBERT / BGE-M3 / encoder hub id (cached locally when offline) or local directory."
    )
    backend: ColBERTBackend = Field(
        default="auto", description="'sentence-transformers', 'bge-m3', or 'auto' (from the checkpoint's files)."
    )
    device: Optional[str] = Field(default=None, description="'cpu', 'cuda', 'mps'; None picks the best.")
    batch_size: int = Field(default=32, description="Documents per forward pass.")
    query_length: Optional[int] = Field(default=None, description="Query tokens ([MASK]-padded up to this).")
    document_length: Optional[int] = Field(default=None, description="Document tokens kept.")
    length_normalize: Optional[bool] = Field(
        default=None, description="Divide MaxSim by the query token count; None follows the model family."
    )
    use_fp16: Optional[bool] = Field(default=None, description="Half precision; None means on a GPU only.")
    long_documents: LongDocuments = Field(
        default="truncate", description="'truncate' or 'split' (score overlapping passages, keep the best)."
    )
    passage_overlap: int = Field(default=32, description="Tokens shared by consecutive passages when splitting.")
    cache_megabytes: int = Field(default=256, description="Memory for cached document token vectors.")
    trust_remote_code: bool = Field(default=False, description="Allow custom model code from the checkpoint.")

    def _build_scorer(self) -> Scorer:
        from rerank_ext_core.colbert import ColBERTScorer

        return ColBERTScorer(
            self.model,
            backend=self.backend,
            device=self.device,
            batch_size=self.batch_size,
            query_length=self.query_length,
            document_length=self.document_length,
            length_normalize=self.length_normalize,
            use_fp16=self.use_fp16,
            long_documents=self.long_documents,
            passage_overlap=self.passage_overlap,
            cache_megabytes=self.cache_megabytes,
            trust_remote_code=self.trust_remote_code,
        )
