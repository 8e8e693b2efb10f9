"""BM25, dense encoding and fusion as the evaluation runs them: the library's own components
(``rerank_ext_core.bm25``, ``.embedding``, ``.fusion``) with progress bars and per-query search
functions on top."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from rerank_ext_core._optional import require
from rerank_ext_core.bm25 import BM25Index
from rerank_ext_core.embedding import SentenceTransformerEmbedder
from rerank_ext_core.fusion import FUSION_MODES
from rerank_ext_core.fusion import fuse as fuse_by_id

__all__ = ["FUSION_MODES", "CorpusEncoder", "bm25_search", "fuse"]

logger = logging.getLogger(__name__)

SearchFn = Callable[[str], list[tuple[str, float]]]


class CorpusEncoder:
    """Unit-length float32 vectors from :class:`SentenceTransformerEmbedder`, with a progress bar."""

    def __init__(self, model_dir: str, *, batch_size: int = 32) -> None:
        self.embedder = SentenceTransformerEmbedder(model_dir, batch_size=batch_size, normalize=True)
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str], *, progress: bool = False, desc: str = "encode") -> np.ndarray:
        tqdm = require("tqdm", feature="progress bars", extra="eval").tqdm
        # Length-sorted chunks (less padding), put back in input order afterwards.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        vectors: list[list[float]] = [[]] * len(texts)
        chunk = self.batch_size * 4
        with tqdm(total=len(texts), desc=desc, unit="doc", disable=not progress) as bar:
            for start in range(0, len(order), chunk):
                positions = order[start : start + chunk]
                for i, vector in zip(positions, self.embedder.embed_documents([texts[i] for i in positions])):
                    vectors[i] = vector
                bar.update(len(positions))
        return np.asarray(vectors, dtype=np.float32)

    def encode_query(self, query: str) -> np.ndarray:
        return np.asarray(self.embedder.embed_query(query), dtype=np.float32)


def bm25_search(
    doc_ids: Sequence[str], texts: Sequence[str], *, k: int, progress: bool = False
) -> SearchFn:
    """Index ``texts`` in a :class:`BM25Index` (default tokenizer) and return a search function."""
    tqdm = require("tqdm", feature="progress bars", extra="eval").tqdm
    index = BM25Index()
    chunk = 1000
    with tqdm(total=len(doc_ids), desc="BM25 index", unit="doc", disable=not progress) as bar:
        for start in range(0, len(doc_ids), chunk):
            index.upsert(list(doc_ids[start : start + chunk]), list(texts[start : start + chunk]))
            bar.update(min(chunk, len(doc_ids) - start))
    index.search("warm up", 1)  # builds the score matrix now, inside the timed indexing step

    def search(query: str) -> list[tuple[str, float]]:
        return index.search(query, k)

    return search


def fuse(
    sides: Sequence[list[tuple[str, float]]], *, mode: str, k: int
) -> list[tuple[str, float]]:
    """Fuse the sparse and dense ``(doc_id, score)`` lists by id with the library's fusion."""
    sparse, dense = sides
    fused = fuse_by_id({"sparse": sparse, "dense": dense}, mode=mode)
    return [(item.id, item.score) for item in fused[:k]]
