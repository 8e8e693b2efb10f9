"""ColBERT late-interaction (MaxSim) scoring.

Two encoders, picked from the checkpoint's files (never from its name):

* ``"sentence-transformers"``: sentence-transformers' ``MultiVectorEncoder``. A Stanford-NLP ColBERT
  checkpoint (``colbert-ir/colbertv2.0``) is scored as ColBERT defines it: the checkpoint's linear
  projection, the ``[Q]``/``[D]`` marker tokens, queries padded with ``[MASK]`` to the query length,
  punctuation skipped in documents, L2-normalised token vectors. PyLate / native multi-vector saves
  load the same way. A plain encoder (BERT, MiniLM, ...) is used without any projection: its own
  normalised token embeddings, never a randomly initialised head.
* ``"bge-m3"``: FlagEmbedding's ``BGEM3FlagModel`` colbert vectors (a checkpoint with
  ``colbert_linear.pt``), scored as BGE-M3 does: MaxSim divided by the query's token count.

A document's token vectors are computed once and kept in a bounded cache keyed by its text.
"""

from __future__ import annotations

import json
import logging
import string
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from rerank_ext_core._cache import ByteBoundedLRU
from rerank_ext_core._device import resolve_device
from rerank_ext_core._models import resolve_model_path
from rerank_ext_core._optional import require
from rerank_ext_core._passages import (
    LongDocuments,
    PassageSplitter,
    check_long_documents,
    score_documents,
)
from rerank_ext_core.colbert_store import text_key
from rerank_ext_core.runtimes import Precision, resolve_precision
from rerank_ext_core._validation import (
    check_bool,
    check_choice,
    check_non_negative_int,
    check_positive_int,
    check_text,
    check_texts,
)

__all__ = [
    "COLBERT_BACKENDS",
    "ColBERTBackend",
    "ColBERTScorer",
    "DEFAULT_COLBERT",
    "detect_colbert_layout",
    "maxsim_scores",
]

logger = logging.getLogger(__name__)

DEFAULT_COLBERT = "colbert-ir/colbertv2.0"
ColBERTBackend = Literal["auto", "sentence-transformers", "bge-m3", "openvino", "onnxruntime"]
COLBERT_BACKENDS: tuple[str, ...] = ("auto", "sentence-transformers", "bge-m3", "openvino", "onnxruntime")
_EXPORTED = ("openvino", "onnxruntime")
# Tokens the encoder adds around every document passage: [CLS], the [D] marker, [SEP].
_DOCUMENT_SPECIAL_TOKENS = 3


def detect_colbert_layout(model_dir: str) -> str:
    """``"bge-m3"``, ``"colbert"`` (Stanford/PyLate/multi-vector save) or ``"encoder"`` (plain)."""
    root = Path(model_dir)
    if (root / "colbert_linear.pt").exists():
        return "bge-m3"
    config_path = root / "config.json"
    if config_path.exists():
        architectures = json.loads(config_path.read_text(encoding="utf-8")).get("architectures") or []
        if "HF_ColBERT" in architectures:
            return "colbert"
    modules_path = root / "modules.json"
    if modules_path.exists():
        modules = json.loads(modules_path.read_text(encoding="utf-8"))
        if any("Dense" in module.get("type", "") for module in modules):
            return "colbert"
    st_config = root / "config_sentence_transformers.json"
    if st_config.exists():
        if json.loads(st_config.read_text(encoding="utf-8")).get("model_type") == "MultiVectorEncoder":
            return "colbert"
    return "encoder"


def _checked_store(store: Any, scorer: Any) -> Any:
    if store is None:
        return None
    if not callable(getattr(store, "vectors_for", None)):
        msg = f"vector_store must be a ColBERTVectorStore, got {type(store).__name__}."
        raise TypeError(msg)
    from rerank_ext_core.colbert_store import vector_signature

    if store.model_fingerprint != vector_signature(scorer):
        msg = (
            f"vector_store holds vectors of another model or other settings than {scorer!r}: rerank with "
            "the model, backend, precision and document_length the store was built with "
            "(ColBERTVectorStore(scorer) uses scorer's)."
        )
        raise ValueError(msg)
    return store


def maxsim_scores(query_vectors: Any, document_vectors: Sequence[Any], *, length_normalize: bool) -> list[float]:
    """Sum over query tokens of the best dot product with any document token (optionally / query length)."""
    import torch

    if not document_vectors:
        return []
    query = torch.as_tensor(query_vectors, dtype=torch.float32)
    docs = [torch.as_tensor(d, dtype=torch.float32) for d in document_vectors]
    longest = max(1, max(d.shape[0] for d in docs))
    padded = torch.zeros(len(docs), longest, query.shape[1])
    valid = torch.zeros(len(docs), longest, dtype=torch.bool)
    for row, doc in enumerate(docs):
        padded[row, : doc.shape[0]] = doc
        valid[row, : doc.shape[0]] = True
    similarities = torch.einsum("qd,btd->bqt", query, padded)
    similarities = similarities.masked_fill(~valid[:, None, :], float("-inf"))
    best = similarities.max(dim=2).values
    best = torch.where(torch.isinf(best), torch.zeros_like(best), best)  # a document with no tokens
    scores = best.sum(dim=1)
    if length_normalize:
        scores = scores / max(1, query.shape[0])
    return [float(s) for s in scores]


class _MultiVectorEncoderBackend:
    """sentence-transformers MultiVectorEncoder: Stanford/PyLate checkpoints or a plain encoder."""

    length_normalize_default = False

    def __init__(self, model_dir: str, layout: str, device: str, use_fp16: bool, batch_size: int,
                 query_length: int | None, document_length: int | None, trust_remote_code: bool,
                 runtime: str = "torch", precision: str = "fp32") -> None:
        st = require("sentence_transformers", feature="ColBERTScorer(backend='sentence-transformers')", extra="st")
        self.precision = precision
        self.batch_size = batch_size
        if layout == "colbert":
            model = st.MultiVectorEncoder(
                model_dir, device=device, local_files_only=True, trust_remote_code=trust_remote_code
            )
        else:
            from sentence_transformers.base.modules import Normalize, Transformer
            from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

            transformer = Transformer(model_dir, processor_kwargs={"local_files_only": True},
                                      model_kwargs={"local_files_only": True},
                                      config_kwargs={"local_files_only": True})
            modules = [
                transformer,
                MultiVectorMask(skiplist_words=list(string.punctuation)),
                Normalize(module_input_name="token_embeddings"),
            ]
            model = st.MultiVectorEncoder(modules=modules, device=device)
            logger.info("%s has no ColBERT projection: scoring MaxSim over its own token embeddings.", model_dir)
        transformer = model[0]
        if query_length is not None:
            expansion = getattr(transformer, "query_expansion", None)
            if expansion:
                transformer.query_expansion = {**expansion, "length": query_length}
            transformer.query_length = query_length
        if document_length is not None:
            transformer.document_length = document_length
        if use_fp16:
            model.half()
        model.eval()
        if runtime in _EXPORTED:
            transformer.model = _exported_transformer(model_dir, runtime, precision, transformer.model)
        self.model = model
        self.tokenizer = model.tokenizer
        self.document_token_budget = document_length or getattr(transformer, "document_length", None) or model.max_seq_length

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.precision == "bf16" and isinstance(self.model[0].model, torch.nn.Module) and not hasattr(self.model[0].model, "session"):
            return torch.autocast(device_type=str(self.model.device).split(":")[0], dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def encode_query(self, query: str) -> Any:
        with self._autocast():
            return self.model.encode_query([query], batch_size=1, show_progress_bar=False)[0].float().cpu()

    def encode_documents(self, texts: list[str]) -> list[Any]:
        with self._autocast():
            vectors = self.model.encode_document(texts, batch_size=self.batch_size, show_progress_bar=False)
        return [v.float().cpu() for v in vectors]


def _exported_transformer(model_dir: str, runtime: str, precision: str, original: Any) -> Any:
    """A stand-in for the encoder's transformers model that runs its export on ``runtime``: the
    rest of the sentence-transformers pipeline (query markers and expansion, the skiplist, a
    ColBERT projection, normalisation) stays as it is."""
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    from rerank_ext_core.export import ExportRequest
    from rerank_ext_core.runtimes import ExportedSession

    session = ExportedSession(ExportRequest(model_dir, "token-encoder", runtime, "int8" if precision == "int8" else "fp32"), precision)

    config = original.config  # only the config: the torch weights are not kept

    class ExportedTransformer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.session = session
            self.config = config

        @property
        def device(self) -> Any:
            return torch.device("cpu")

        @property
        def dtype(self) -> Any:
            return torch.float32

        def forward(self, input_ids: Any = None, attention_mask: Any = None, token_type_ids: Any = None, **_: Any) -> Any:
            features = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
            if token_type_ids is not None:
                features["token_type_ids"] = token_type_ids.cpu().numpy()
            elif "token_type_ids" in session.input_names:
                features["token_type_ids"] = (input_ids * 0).cpu().numpy()
            return BaseModelOutput(last_hidden_state=torch.from_numpy(session.run(features)))

    return ExportedTransformer()


class _BGEM3Backend:
    """FlagEmbedding's BGEM3FlagModel colbert vectors (CLS dropped, projected, normalised)."""

    length_normalize_default = True

    def __init__(self, model_dir: str, device: str, use_fp16: bool, batch_size: int,
                 query_length: int | None, document_length: int | None, trust_remote_code: bool) -> None:
        flag = require("FlagEmbedding", feature="ColBERTScorer(backend='bge-m3')", extra="flag")
        self.model = flag.BGEM3FlagModel(
            model_dir, use_fp16=use_fp16, devices=device, normalize_embeddings=True,
            trust_remote_code=trust_remote_code,
        )
        self.tokenizer = self.model.tokenizer
        self.batch_size = batch_size
        model_limit = min(int(self.tokenizer.model_max_length), 8192)
        self.query_length = min(query_length or 512, model_limit)
        self.document_token_budget = min(document_length or model_limit, model_limit)

    def _encode(self, texts: list[str], max_length: int) -> list[Any]:
        import torch

        output = self.model.encode(
            texts, batch_size=self.batch_size, max_length=max_length,
            return_dense=False, return_sparse=False, return_colbert_vecs=True,
        )
        return [torch.from_numpy(v).float() for v in output["colbert_vecs"]]

    def encode_query(self, query: str) -> Any:
        return self._encode([query], self.query_length)[0]

    def encode_documents(self, texts: list[str]) -> list[Any]:
        return self._encode(texts, self.document_token_budget)


class ColBERTScorer:
    """Late-interaction reranking: each document's score is the MaxSim of its token vectors.

    Args:
        model: hub id (in the local cache when offline) or local directory.
        backend: ``"sentence-transformers"`` (ColBERT/PyLate checkpoints and plain encoders),
            ``"bge-m3"`` (FlagEmbedding), ``"openvino"`` or ``"onnxruntime"`` (the same
            checkpoints as sentence-transformers, the encoder run from an export made once and
            cached), or ``"auto"`` to pick from the checkpoint's files.
        device: ``None`` picks the best available.
        batch_size: documents per forward pass.
        query_length: query tokens (ColBERT pads shorter queries with ``[MASK]`` up to this).
        document_length: document tokens kept; longer documents are truncated or split.
        length_normalize: divide by the query's token count (MeanMaxSim). ``None`` follows the
            model family: raw sum for ColBERT, mean for BGE-M3.
        long_documents: ``"truncate"`` or ``"split"`` (best passage wins).
        passage_overlap: tokens shared by consecutive passages when splitting.
        use_fp16: half precision; ``None`` means on a GPU only (read when ``precision="auto"``).
        precision: ``"fp32"``, ``"bf16"`` (CPUs with AVX-512 BF16 or AMX; elsewhere fp32, with a
            warning), ``"int8"`` (OpenVINO or ONNX Runtime), ``"fp16"`` (GPU), or ``"auto"``: bf16
            for OpenVINO where the CPU has it, fp16 on a GPU, fp32 otherwise.
        cache_megabytes: memory for cached document vectors (0 disables the cache).
        vector_store: a :class:`~rerank_ext_core.colbert_store.ColBERTVectorStore` of the same model
            (e.g. the one a ``ChromaHybridSearch`` keeps): documents it holds are not encoded again.
        trust_remote_code: allow custom model code from the checkpoint.
    """

    def __init__(
        self,
        model: str = DEFAULT_COLBERT,
        *,
        backend: ColBERTBackend = "auto",
        device: str | None = None,
        batch_size: int = 32,
        query_length: int | None = None,
        document_length: int | None = None,
        length_normalize: bool | None = None,
        use_fp16: bool | None = None,
        precision: Precision = "auto",
        long_documents: LongDocuments = "truncate",
        passage_overlap: int = 32,
        cache_megabytes: int = 256,
        vector_store: Any = None,
        trust_remote_code: bool = False,
    ) -> None:
        self.batch_size = check_positive_int("batch_size", batch_size)
        if query_length is not None:
            check_positive_int("query_length", query_length)
        if document_length is not None:
            check_positive_int("document_length", document_length)
        self.long_documents = check_long_documents(long_documents)
        check_choice("backend", backend, COLBERT_BACKENDS)
        check_non_negative_int("cache_megabytes", cache_megabytes)
        check_non_negative_int("passage_overlap", passage_overlap)
        check_bool("length_normalize", length_normalize, optional=True)
        check_bool("use_fp16", use_fp16, optional=True)
        check_bool("trust_remote_code", trust_remote_code)
        self.model_name = str(model)
        self.model_path = resolve_model_path(model, purpose="ColBERT model")
        layout = detect_colbert_layout(self.model_path)
        if backend == "auto":
            backend = "bge-m3" if layout == "bge-m3" else "sentence-transformers"
        elif backend == "bge-m3" and layout != "bge-m3":
            msg = (
                f"backend='bge-m3' needs a BGE-M3 checkpoint with colbert_linear.pt, which "
                f"{self.model_path!r} lacks. Use backend='auto' or 'sentence-transformers'."
            )
            raise ValueError(msg)
        elif backend in _EXPORTED and layout == "bge-m3":
            msg = f"backend={backend!r} runs sentence-transformers checkpoints; a BGE-M3 checkpoint needs backend='bge-m3' or 'auto'."
            raise ValueError(msg)
        self.backend = backend
        self.device = "cpu" if backend in _EXPORTED and device is None else resolve_device(device)
        if backend in _EXPORTED and self.device != "cpu":
            msg = f"backend={backend!r} runs on the CPU; pass device='cpu', or backend='sentence-transformers' for {self.device!r}."
            raise ValueError(msg)
        self.precision = resolve_precision(backend, precision, self.device, use_fp16=use_fp16)
        settings = dict(device=self.device, use_fp16=self.precision == "fp16", batch_size=self.batch_size,
                        query_length=query_length, document_length=document_length,
                        trust_remote_code=trust_remote_code)
        if backend == "bge-m3":
            self._encoder: Any = _BGEM3Backend(self.model_path, **settings)
        else:
            self._encoder = _MultiVectorEncoderBackend(
                self.model_path, layout if layout != "bge-m3" else "encoder", **settings,
                runtime=backend if backend in _EXPORTED else "torch", precision=self.precision,
            )
        self.length_normalize = (
            self._encoder.length_normalize_default if length_normalize is None else bool(length_normalize)
        )
        self._splitter = PassageSplitter(self._encoder.tokenizer, overlap=passage_overlap)
        self._document_cache = ByteBoundedLRU(cache_megabytes * 1024 * 1024)
        self._lock = threading.Lock()
        self.vector_store = _checked_store(vector_store, self)
        self.documents_encoded = 0
        """How many document texts went through the model (cache misses), for monitoring."""

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        query = check_text("query", query)
        texts = check_texts("texts", texts)
        if not texts:
            return []
        with self._lock:
            query_vectors = self._encoder.encode_query(query)
        return score_documents(
            texts, self.long_documents, self._splitter,
            lambda: max(1, self._encoder.document_token_budget - _DOCUMENT_SPECIAL_TOKENS),
            lambda passages: self._score_with(query_vectors, passages),
        )

    def _score_with(self, query_vectors: Any, texts: list[str]) -> list[float]:
        return maxsim_scores(query_vectors, self.document_vectors(texts), length_normalize=self.length_normalize)

    def document_vectors(self, texts: Sequence[str]) -> list[Any]:
        """Token vectors of each text, from the cache where possible; new texts are encoded once."""
        keys = [text_key(text) for text in texts]
        vectors: list[Any] = [self._document_cache.get(key) for key in keys]
        if self.vector_store is not None:
            vectors = [self.vector_store.vectors_for(key) if vector is None else vector for key, vector in zip(keys, vectors)]
        missing: dict[bytes, str] = {}
        for key, text, vector in zip(keys, texts, vectors):
            if vector is None:
                missing.setdefault(key, text)
        if missing:
            with self._lock:
                encoded = self._encoder.encode_documents(list(missing.values()))
                self.documents_encoded += len(missing)
            fresh = dict(zip(missing, encoded))
            for key, vector in fresh.items():
                self._document_cache.put(key, vector)
            vectors = [fresh.get(key) if vector is None else vector for key, vector in zip(keys, vectors)]
        return vectors

    def encode_documents_uncached(self, texts: list[str]) -> list[Any]:
        """Token vectors of ``texts`` straight from the encoder (what a vector store keeps)."""
        with self._lock:
            vectors = self._encoder.encode_documents(list(texts))
            self.documents_encoded += len(texts)
        return [v.numpy() if hasattr(v, "numpy") else v for v in vectors]

    def clear_cache(self) -> None:
        self._document_cache.clear()

    def __repr__(self) -> str:
        return f"ColBERTScorer(model={self.model_name!r}, backend={self.backend!r}, device={self.device!r})"
