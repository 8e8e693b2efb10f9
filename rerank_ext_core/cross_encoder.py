"""Cross-encoder scoring over sentence-transformers ``CrossEncoder``, FlagEmbedding ``FlagReranker``,
or an export of the checkpoint on OpenVINO or ONNX Runtime (fast on a CPU).

Every backend returns the model's raw logit for each (query, text) pair; this module applies the
sigmoid itself when ``normalize=True``, so one model gives the same scores on any backend and a
``score_threshold`` means the same thing everywhere.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rerank_ext_core._device import resolve_device
from rerank_ext_core._models import resolve_model_path
from rerank_ext_core._optional import first_loadable, require
from rerank_ext_core._passages import (
    LongDocuments,
    PassageSplitter,
    check_long_documents,
    score_documents,
)
from rerank_ext_core.runtimes import PRECISIONS, Precision, resolve_precision
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
CrossEncoderBackend = Literal["auto", "sentence-transformers", "flag", "openvino", "onnxruntime"]
CROSS_ENCODER_BACKENDS: tuple[str, ...] = ("auto", "sentence-transformers", "flag", "openvino", "onnxruntime")
EXPORTED_BACKENDS: tuple[str, ...] = ("openvino", "onnxruntime")


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


# backend="auto" tries these in order: (backend, module, extra).
AUTO_BACKEND_ORDER: tuple[tuple[str, str, str], ...] = (
    ("sentence-transformers", "sentence_transformers", "st"),
    ("flag", "FlagEmbedding", "flag"),
)
# backend="auto" with precision="int8": the runtimes that quantise, in this order.
AUTO_INT8_ORDER: tuple[tuple[str, str, str], ...] = (
    ("openvino", "openvino", "openvino"),
    ("onnxruntime", "onnxruntime", "onnx"),
)


def _backend_candidates(backend: str, precision: str) -> list[str]:
    """The backends to try, in order: the one asked for, or for ``"auto"`` the installed ones
    (with ``precision="int8"``, the quantising runtimes, so a failed export can fall back)."""
    check_choice("backend", backend, CROSS_ENCODER_BACKENDS)
    if backend != "auto":
        return [backend]
    if precision == "int8":
        loadable = [name for name, module, _ in AUTO_INT8_ORDER if _importable(module)]
        if loadable:
            return loadable
        first_loadable(AUTO_INT8_ORDER, feature="CrossEncoderScorer(precision='int8')")  # raises, naming the extras
    return [first_loadable(AUTO_BACKEND_ORDER, feature="CrossEncoderScorer")[0]]


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


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
        backend: ``"sentence-transformers"``, ``"flag"``, ``"openvino"``, ``"onnxruntime"`` (the last
            two run an export of the checkpoint, made once and cached), or ``"auto"``: the first of
            sentence-transformers and FlagEmbedding installed (with ``precision="int8"``: OpenVINO,
            then ONNX Runtime).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; ``None`` picks the best available.
        batch_size: pairs per forward pass.
        max_length: tokens per (query, text) pair; longer pairs are truncated or split.
        normalize: ``True`` gives sigmoid probabilities in (0, 1); ``False`` gives raw logits.
        use_fp16: half precision; ``None`` means on a GPU only (read when ``precision="auto"``).
        precision: ``"fp32"``, ``"bf16"`` (CPUs with AVX-512 BF16 or AMX; elsewhere fp32, with a
            warning), ``"int8"`` (OpenVINO or ONNX Runtime), ``"fp16"`` (GPU), or ``"auto"``: bf16
            for OpenVINO where the CPU has it, fp16 on a GPU, fp32 otherwise.
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
        precision: Precision = "auto",
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
        check_choice("precision", precision, PRECISIONS)
        candidates = _backend_candidates(backend, precision)
        self.model_name = str(model)
        self.model_path = resolve_model_path(model, purpose="cross-encoder model")
        _check_max_length(self.max_length, self.model_path, self.model_name)
        self._lock = threading.Lock()
        self._session = None
        failures = []
        for candidate in candidates:
            try:
                # The exported runtimes run on the CPU: device=None means the CPU for them.
                self.device = "cpu" if candidate in EXPORTED_BACKENDS and device is None else resolve_device(device)
                self._load(candidate, precision, use_fp16, trust_remote_code)
                break
            except (RuntimeError, ImportError) as exc:
                if len(candidates) == 1:
                    raise
                logger.warning("backend=%r failed (%s); trying the next one (backend='auto').", candidate, exc)
                failures.append(f"{candidate}: {exc}")
        else:
            msg = "backend='auto' found no backend that loads: " + "; ".join(failures)
            raise RuntimeError(msg)
        self._splitter = PassageSplitter(self._tokenizer, overlap=passage_overlap)

    def _load(self, backend: str, precision: str, use_fp16: bool | None, trust_remote_code: bool) -> None:
        self.backend = backend
        if backend in EXPORTED_BACKENDS and self.device != "cpu":
            msg = f"backend={backend!r} runs on the CPU; pass device='cpu', or backend='sentence-transformers' for {self.device!r}."
            raise ValueError(msg)
        self.precision = resolve_precision(backend, precision, self.device, use_fp16=use_fp16)
        self.use_fp16 = self.precision == "fp16"
        if backend == "sentence-transformers":
            self._model = self._load_sentence_transformers(trust_remote_code)
            tokenizer = self._model.tokenizer
        elif backend == "flag":
            self._model = self._load_flag(trust_remote_code)
            tokenizer = self._model.tokenizer
        else:
            tokenizer = self._load_exported(backend)
        self._tokenizer = tokenizer

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

    def _load_exported(self, backend: str) -> Any:
        transformers = require("transformers", feature=f"CrossEncoderScorer(backend={backend!r})", extra="st")
        _check_single_logit(self.model_path, self.model_name)
        from rerank_ext_core.export import ExportRequest
        from rerank_ext_core.runtimes import ExportedSession

        export_precision = "int8" if self.precision == "int8" else "fp32"
        request = ExportRequest(self.model_path, "cross-encoder", backend, export_precision)
        self._session = ExportedSession(request, self.precision)
        return transformers.AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)

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
        if self._session is not None:
            logits = np.concatenate([self._exported_logits(pairs[start : start + self.batch_size])
                                     for start in range(0, len(pairs), self.batch_size)])
        elif self.backend == "sentence-transformers":
            import torch

            autocast = (torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16)
                        if self.precision == "bf16" else contextlib.nullcontext())
            with autocast:
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

    def _exported_logits(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        features = self._tokenizer(
            [query for query, _ in pairs], [text for _, text in pairs], padding=True, truncation=True,
            max_length=self.max_length, return_tensors="np",
        )
        return np.asarray(self._session.run(features), dtype=np.float64).reshape(len(pairs))

    def __repr__(self) -> str:
        return (
            f"CrossEncoderScorer(model={self.model_name!r}, backend={self.backend!r}, "
            f"precision={self.precision!r}, device={self.device!r}, normalize={self.normalize})"
        )


def _check_single_logit(model_dir: str, model_name: str) -> None:
    config_path = Path(model_dir) / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    labels = config.get("num_labels") or len(config.get("id2label") or {}) or 1
    if labels != 1:
        msg = (
            f"The model {model_name!r} has {labels} output labels; a reranker needs one relevance "
            "logit per pair. Pass a reranking cross-encoder (num_labels=1)."
        )
        raise ValueError(msg)
