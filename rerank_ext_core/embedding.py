"""A small sentence-transformers text embedder over a local model, usable as a Chroma embedding
function and as the query embedder of :class:`~rerank_ext_core.hybrid.ChromaHybridSearch`."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from rerank_ext_core._models import resolve_model_path
from rerank_ext_core._optional import require

__all__ = ["SentenceTransformerEmbedder", "TextEmbedder"]

logger = logging.getLogger(__name__)


@runtime_checkable
class TextEmbedder(Protocol):
    """What the hybrid engine needs to embed text (LangChain ``Embeddings`` already fit)."""

    def embed_query(self, text: str) -> list[float]: ...

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...


class SentenceTransformerEmbedder:
    """Embed texts with a sentence-transformers model loaded once, on first use.

    Args:
        model: a local model directory (or a hub id already in the local cache).
        device: torch device, ``"cpu"`` by default.
        batch_size: texts per forward pass.
        normalize: L2-normalise embeddings (so Chroma's l2, ip and cosine spaces rank alike).

    Thread-safe: concurrent calls are serialised (Hugging Face fast tokenizers are not
    thread-safe). As a Chroma embedding function pass the instance itself:
    ``client.create_collection(name, embedding_function=embedder)``.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        device: str = "cpu",
        batch_size: int = 64,
        normalize: bool = True,
    ) -> None:
        if batch_size <= 0:
            msg = f"batch_size={batch_size} must be a positive number of texts."
            raise ValueError(msg)
        self.model_path = resolve_model_path(model, purpose="embedding model")
        self.device = device
        self.batch_size = batch_size
        self.normalize = normalize
        self._model: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder(model={self.model_path!r}, device={self.device!r})"

    def _encode(self, texts: Sequence[str]) -> list[list[float]]:
        with self._lock:
            if self._model is None:
                st = require("sentence_transformers", feature="Sentence-transformers embeddings", extra="st")
                logger.info("Loading embedding model %s on %s", self.model_path, self.device)
                self._model = st.SentenceTransformer(self.model_path, device=self.device)
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=self.normalize,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return vectors.tolist()

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if isinstance(texts, str):
            msg = "embed_documents takes a list of texts, not one string; use embed_query for one text."
            raise TypeError(msg)
        return self._encode(texts) if len(texts) else []

    def embed_query(self, text: str | None = None, *, input: Sequence[str] | None = None):  # noqa: A002
        """One query's vector; called by Chroma as ``embed_query(input=[...])`` it returns one
        vector per text, as Chroma's embedding-function protocol expects."""
        if input is not None:
            return self.embed_documents(input)
        if not isinstance(text, str):
            msg = f"embed_query takes one query string, got {type(text).__name__}."
            raise TypeError(msg)
        return self._encode([text])[0]

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)

    async def aembed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    # Chroma embedding-function protocol (legacy form: no registered name or config).
    def __call__(self, input: Sequence[str]) -> list[list[float]]:  # noqa: A002
        return self.embed_documents(input)

    def is_legacy(self) -> bool:
        return True

    @staticmethod
    def name() -> str:
        return "rerank_ext_sentence_transformer"
