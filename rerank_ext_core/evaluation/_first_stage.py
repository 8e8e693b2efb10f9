"""BM25, the sentence encoder and score fusion as the evaluation uses them.

Interim: these call bm25s / sentence-transformers directly and fuse by id with the textbook
formulas. They are replaced by ``rerank_ext_core.bm25``, ``.embedding`` and ``.fusion`` when the
hybrid branch lands, so the evaluation measures exactly the library's own components.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from rerank_ext_core._optional import require

__all__ = ["FUSION_MODES", "SentenceEncoder", "bm25_search", "fuse"]

logger = logging.getLogger(__name__)

FUSION_MODES = ("rrf", "relative_score", "dist_based_score")


class SentenceEncoder:
    """A sentence-transformers bi-encoder over a local folder; unit-length float32 vectors."""

    def __init__(self, model_dir: str, *, batch_size: int = 32, max_length: int | None = None) -> None:
        st = require("sentence_transformers", feature="dense retrieval", extra="st")
        self._model = st.SentenceTransformer(str(model_dir), device="cpu")
        if max_length is not None:
            self._model.max_seq_length = max_length
        self.batch_size = batch_size

    @property
    def max_length(self) -> int:
        return int(self._model.max_seq_length)

    def encode(self, texts: Sequence[str], *, progress: bool = False, desc: str = "encode") -> np.ndarray:
        tqdm = require("tqdm", feature="progress bars", extra="eval").tqdm
        # Length-sorted batches (less padding), restored to input order afterwards.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        vectors: list[np.ndarray] = [np.empty(0)] * len(texts)
        with tqdm(total=len(texts), desc=desc, unit="doc", disable=not progress) as bar:
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                encoded = self._model.encode(
                    [texts[i] for i in batch],
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                for i, vector in zip(batch, _unit_rows(encoded)):
                    vectors[i] = vector
                bar.update(len(batch))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.asarray(vectors, dtype=np.float32)

    def encode_query(self, query: str) -> np.ndarray:
        vector = self._model.encode([query], convert_to_numpy=True, show_progress_bar=False)
        return _unit_rows(vector)[0]


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """L2-normalise rows in numpy: sentence-transformers 6.2's ``normalize_embeddings=True`` costs
    about 0.5 s per call on CPU here (measured), 50x the forward pass of a short query."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def bm25_search(
    doc_ids: Sequence[str], texts: Sequence[str], *, k: int, progress: bool = False
) -> Callable[[str], list[tuple[str, float]]]:
    """Index ``texts`` with bm25s (English stopwords and stemming) and return a search function."""
    bm25s = require("bm25s", feature="BM25 retrieval", extra="bm25")
    stemmer_module = require("Stemmer", feature="BM25 stemming", extra="bm25")
    stemmer = stemmer_module.Stemmer("english")
    corpus_tokens = bm25s.tokenize(
        list(texts), stopwords="en", stemmer=stemmer, show_progress=progress
    )
    retriever = bm25s.BM25()
    retriever.index(corpus_tokens, show_progress=progress)
    k = min(k, len(doc_ids))

    def search(query: str) -> list[tuple[str, float]]:
        query_tokens = bm25s.tokenize(
            [query], stopwords="en", stemmer=stemmer, show_progress=False, return_ids=False
        )
        if not query_tokens or not query_tokens[0]:
            return []
        indices, scores = retriever.retrieve(query_tokens, k=k, show_progress=False, n_threads=1)
        return [(doc_ids[i], float(s)) for i, s in zip(indices[0], scores[0]) if s > 0]

    return search


def _min_max(scores: dict[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    return {doc_id: (s - low) / span if span > 0 else 1.0 for doc_id, s in scores.items()}


def _distribution(scores: dict[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    values = np.fromiter(scores.values(), dtype=float)
    mean, std = float(values.mean()), float(values.std())
    low, high = mean - 3 * std, mean + 3 * std
    span = high - low
    return {doc_id: (s - low) / span if span > 0 else 1.0 for doc_id, s in scores.items()}


def fuse(
    sides: Sequence[list[tuple[str, float]]],
    *,
    mode: str,
    k: int,
    weights: Sequence[float] | None = None,
    rrf_k: int = 60,
) -> list[tuple[str, float]]:
    """Fuse ranked ``(doc_id, score)`` lists by id; returns the top ``k`` by fused score."""
    weights = list(weights) if weights is not None else [1.0] * len(sides)
    fused: dict[str, float] = {}
    for side, weight in zip(sides, weights):
        if mode == "rrf":
            contributions = {doc_id: 1.0 / (rrf_k + rank) for rank, (doc_id, _) in enumerate(side, 1)}
        elif mode == "relative_score":
            contributions = _min_max(dict(side))
        elif mode == "dist_based_score":
            contributions = _distribution(dict(side))
        else:
            msg = f"Unknown fusion mode {mode!r}: use one of {', '.join(FUSION_MODES)}."
            raise ValueError(msg)
        for doc_id, value in contributions.items():
            fused[doc_id] = fused.get(doc_id, 0.0) + weight * value
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
