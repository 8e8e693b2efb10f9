"""A small sentence-transformers text embedder over a local model (the query embedder of
:class:`~rerank_ext_core.hybrid.ChromaHybridSearch`, and a LangChain-shaped ``Embeddings``), and
:class:`ChromaEmbeddingFunction`, which presents any such embedder to Chroma."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from rerank_ext_core._models import resolve_model_path
from rerank_ext_core._optional import require
from rerank_ext_core._validation import check_positive_int

__all__ = ["ChromaEmbeddingFunction", "SentenceTransformerEmbedder", "TextEmbedder"]

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
    thread-safe). As a Chroma embedding function wrap it:
    ``client.create_collection(name, embedding_function=ChromaEmbeddingFunction(embedder))``.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        device: str = "cpu",
        batch_size: int = 64,
        normalize: bool = True,
    ) -> None:
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.model_path = resolve_model_path(model, purpose="embedding model")
        self.device = device
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

    def embed_query(self, text: str) -> list[float]:
        if not isinstance(text, str):
            msg = f"embed_query takes one query string, got {type(text).__name__}."
            raise TypeError(msg)
        return self._encode([text])[0]

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)

    async def aembed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)


class ChromaEmbeddingFunction:
    """Chroma's embedding-function protocol over any embedder with ``embed_documents(texts)``
    (ours, or a LangChain ``Embeddings``): ``create_collection(name,
    embedding_function=ChromaEmbeddingFunction(embedder))``. Chroma embeds both the documents
    and the query texts it is given through it."""

    def __init__(self, embedder: TextEmbedder) -> None:
        self.embedder = embedder

    def __call__(self, input: Sequence[str]) -> list[list[float]]:  # noqa: A002 - Chroma's name
        return self.embedder.embed_documents(list(input))

    def embed_query(self, input: Sequence[str]) -> list[list[float]]:  # noqa: A002
        return self(input)

    def is_legacy(self) -> bool:  # no registered name or config: Chroma persists nothing of it
        return True

    @staticmethod
    def name() -> str:
        return "rerank_ext_embedder"
