"""Cross-encoder scoring over sentence-transformers ``CrossEncoder`` or FlagEmbedding ``FlagReranker``.

Both backends return the model's raw logit for each (query, text) pair; this module applies the
sigmoid itself when ``normalize=True``, so one model gives the same scores on either backend and a
``score_threshold`` means the same thing everywhere.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rerank_ext_core._device import resolve_device, resolve_fp16
from rerank_ext_core._models import resolve_model_path
from rerank_ext_core._optional import first_loadable, require
from rerank_ext_core._passages import (
    LongDocuments,
    PassageSplitter,
    check_long_documents,
    score_documents,
)
from rerank_ext_core._validation import (
    check_bool,
    check_choice,
    check_non_negative_int,
    check_optional_text,
    check_positive_int,
    check_text,
    check_texts,
)

__all__ = [
    "CROSS_ENCODER_BACKENDS",
    "CrossEncoderBackend",
    "CrossEncoderScorer",
    "DEFAULT_CROSS_ENCODER",
    "sigmoid",
]

logger = logging.getLogger(__name__)

DEFAULT_CROSS_ENCODER = "BAAI/bge-reranker-base"
CrossEncoderBackend = Literal["auto", "sentence-transformers", "flag"]
CROSS_ENCODER_BACKENDS: tuple[str, ...] = ("auto", "sentence-transformers", "flag")


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


# backend="auto" tries these in order: (backend, module, extra).
AUTO_BACKEND_ORDER: tuple[tuple[str, str, str], ...] = (
    ("sentence-transformers", "sentence_transformers", "st"),
    ("flag", "FlagEmbedding", "flag"),
)


def _pick_backend(backend: str) -> str:
    check_choice("backend", backend, CROSS_ENCODER_BACKENDS)
    if backend != "auto":
        return backend
    return first_loadable(AUTO_BACKEND_ORDER, feature="CrossEncoderScorer")[0]


def model_token_limit(model_dir: str) -> int | None:
    """The longest input the checkpoint accepts, read from its tokenizer and model configs."""
    root = Path(model_dir)
    tokenizer_config = root / "tokenizer_config.json"
    if tokenizer_config.exists():
        limit = json.loads(tokenizer_config.read_text(encoding="utf-8")).get("model_max_length")
        if isinstance(limit, (int, float)) and limit < 1_000_000:
            return int(limit)
    model_config = root / "config.json"
    if model_config.exists():
        config = json.loads(model_config.read_text(encoding="utf-8"))
        positions = config.get("max_position_embeddings")
        if isinstance(positions, int):
            # RoBERTa-family models reserve two positions for the padding offset.
            return positions - 2 if config.get("model_type") in {"roberta", "xlm-roberta"} else positions
    return None


def _check_max_length(max_length: int, model_dir: str, model_name: str) -> None:
    limit = model_token_limit(model_dir)
    if limit is not None and max_length > limit:
        msg = (
            f"max_length={max_length} is more than the model {model_name!r} accepts ({limit} tokens). "
            f"Pass max_length={limit} or less; use long_documents='split' to score longer texts."
        )
        raise ValueError(msg)


class CrossEncoderScorer:
    """Scores (query, text) pairs with a cross-encoder such as ``BAAI/bge-reranker-base``.

    The model loads once, here, and the instance is safe to share between threads.

    Args:
        model: hub id (must already be in the local cache when offline) or local directory.
        backend: ``"sentence-transformers"``, ``"flag"``, or ``"auto"`` for the first one installed
            in that order.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; ``None`` picks the best available.
        batch_size: pairs per forward pass.
        max_length: tokens per (query, text) pair; longer pairs are truncated or split.
        normalize: ``True`` gives sigmoid probabilities in (0, 1); ``False`` gives raw logits.
        use_fp16: half precision; ``None`` means on a GPU only.
        query_instruction: text prepended to every query (for models trained with one).
        long_documents: ``"truncate"`` keeps the first ``max_length`` tokens; ``"split"`` scores
            overlapping passages that fit and keeps each document's best passage score.
        passage_overlap: tokens shared by consecutive passages when splitting.
        trust_remote_code: allow custom model code from the checkpoint.
    """

    def __init__(
        self,
        model: str = DEFAULT_CROSS_ENCODER,
        *,
        backend: CrossEncoderBackend = "auto",
        device: str | None = None,
        batch_size: int = 32,
        max_length: int = 512,
        normalize: bool = True,
        use_fp16: bool | None = None,
        query_instruction: str | None = None,
        long_documents: LongDocuments = "truncate",
        passage_overlap: int = 64,
        trust_remote_code: bool = False,
    ) -> None:
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.max_length = check_positive_int("max_length", max_length)
        self.long_documents = check_long_documents(long_documents)
        check_non_negative_int("passage_overlap", passage_overlap)
        check_bool("use_fp16", use_fp16, optional=True)
        check_bool("trust_remote_code", trust_remote_code)
        self.normalize = check_bool("normalize", normalize)
        self.query_instruction = check_optional_text("query_instruction", query_instruction) or ""
        self.backend = _pick_backend(backend)
        self.model_name = str(model)
        self.model_path = resolve_model_path(model, purpose="cross-encoder model")
        _check_max_length(self.max_length, self.model_path, self.model_name)
        self.device = resolve_device(device)
        self.use_fp16 = resolve_fp16(use_fp16, self.device)
        self._lock = threading.Lock()
        if self.backend == "sentence-transformers":
            self._model = self._load_sentence_transformers(trust_remote_code)
            tokenizer = self._model.tokenizer
        else:
            self._model = self._load_flag(trust_remote_code)
            tokenizer = self._model.tokenizer
        self._tokenizer = tokenizer
        self._splitter = PassageSplitter(tokenizer, overlap=passage_overlap)

    def _load_sentence_transformers(self, trust_remote_code: bool) -> Any:
        st = require("sentence_transformers", feature="CrossEncoderScorer(backend='sentence-transformers')", extra="st")
        model = st.CrossEncoder(
            self.model_path,
            device=self.device,
            max_length=self.max_length,
            trust_remote_code=trust_remote_code,
            local_files_only=True,
        )
        if model.num_labels != 1:
            msg = (
                f"The model {self.model_name!r} has {model.num_labels} output labels; a reranker needs "
                "one relevance logit per pair. Pass a reranking cross-encoder (num_labels=1)."
            )
            raise ValueError(msg)
        if self.use_fp16:
            model.half()
        model.eval()
        return model

    def _load_flag(self, trust_remote_code: bool) -> Any:
        flag = require("FlagEmbedding", feature="CrossEncoderScorer(backend='flag')", extra="flag")
        return flag.FlagReranker(
            self.model_path,
            use_fp16=self.use_fp16,
            devices=self.device,
            batch_size=self.batch_size,
            max_length=self.max_length,
            trust_remote_code=trust_remote_code,
            normalize=False,
        )

    @property
    def score_bounds(self) -> tuple[float, float] | None:
        """Every score lies in these bounds: sigmoid probabilities with ``normalize=True``."""
        return (0.0, 1.0) if self.normalize else None

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        query = check_text("query", query)
        texts = check_texts("texts", texts)
        if not texts:
            return []
        query = f"{self.query_instruction}{query}"
        return score_documents(
            texts, self.long_documents, self._splitter,
            lambda: self.max_length - self._splitter.count_tokens(query) - self._tokenizer.num_special_tokens_to_add(pair=True),
            lambda passages: self._score_pairs(query, passages),
        )

    def _score_pairs(self, query: str, texts: list[str]) -> list[float]:
        # A blank text is relevant to nothing: it gets the lowest score (0 as a probability, -inf
        # as a logit) without a model call, so both backends agree on it.
        logits = np.full(len(texts), -np.inf)
        non_blank = [i for i, text in enumerate(texts) if text.strip()]
        if non_blank:
            with self._lock:
                logits[non_blank] = self._predict_logits([(query, texts[i]) for i in non_blank])
        with np.errstate(over="ignore"):
            scores = sigmoid(logits) if self.normalize else logits
        return [float(s) for s in scores]

    def _predict_logits(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        if self.backend == "sentence-transformers":
            import torch

            logits = self._model.predict(
                pairs,
                batch_size=self.batch_size,
                activation_fn=torch.nn.Identity(),
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        else:
            logits = self._model.compute_score(
                pairs, batch_size=self.batch_size, max_length=self.max_length, normalize=False
            )
        return np.asarray(logits, dtype=np.float64).reshape(len(pairs))

    def __repr__(self) -> str:
        return (
            f"CrossEncoderScorer(model={self.model_name!r}, backend={self.backend!r}, "
            f"device={self.device!r}, normalize={self.normalize})"
        )
