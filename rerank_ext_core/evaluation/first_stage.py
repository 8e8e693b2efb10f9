"""The first stages the evaluation runs: BM25, dense and their fusion (hybrid), each timed per query.

BM25 and dense map a query to ``[(doc_id, score)]`` best first, using the library's own components
(``rerank_ext_core.bm25``, ``.embedding``) with progress bars on top; hybrid fuses the two lists by
document id with ``rerank_ext_core.fusion.fuse``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rerank_ext_core._optional import require
from rerank_ext_core.bm25 import BM25Index
from rerank_ext_core.embedding import SentenceTransformerEmbedder
from rerank_ext_core.fusion import fuse

__all__ = [
    "CorpusEncoder",
    "SearchFn",
    "StageResult",
    "bm25_search",
    "exact_dense_search",
    "fusion_stage",
    "run_search",
]

logger = logging.getLogger(__name__)

SearchFn = Callable[[str], list[tuple[str, float]]]


@dataclass
class StageResult:
    """What one stage returned for every query, and how long it took."""

    name: str
    ranking: dict[str, list[str]] = field(default_factory=dict)
    """Document ids per query, best first."""
    scores: dict[str, list[float]] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    """This stage's own work per query."""
    pipeline_latency_ms: dict[str, float] = field(default_factory=dict)
    """From the query text to this stage's output (a hybrid stage includes BM25 and dense)."""


class CorpusEncoder:
    """Unit-length float32 vectors from :class:`SentenceTransformerEmbedder`, with a progress bar."""

    def __init__(self, model_dir: str, *, batch_size: int = 32, device: str = "cpu") -> None:
        self.embedder = SentenceTransformerEmbedder(model_dir, batch_size=batch_size, normalize=True, device=device)
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


def exact_dense_search(
    corpus_vectors: np.ndarray,
    doc_ids: Sequence[str],
    encode_query: Callable[[str], np.ndarray],
    *,
    k: int,
) -> SearchFn:
    """Exact inner-product search over normalised vectors (the quality a vector index approximates)."""
    k = min(k, len(doc_ids))

    def search(query: str) -> list[tuple[str, float]]:
        similarities = corpus_vectors @ encode_query(query)
        top = np.argpartition(-similarities, k - 1)[:k]
        top = top[np.argsort(-similarities[top], kind="stable")]
        return [(doc_ids[i], float(similarities[i])) for i in top]

    return search


def run_search(
    name: str,
    search: SearchFn,
    queries: dict[str, str],
    *,
    upstream: Sequence[StageResult] = (),
) -> StageResult:
    """Run ``search`` once per query, timing each call; ``upstream`` latencies add to the pipeline."""
    result = StageResult(name)
    for query_id, query in queries.items():
        start = time.perf_counter()
        hits = search(query)
        elapsed_ms = (time.perf_counter() - start) * 1000
        result.ranking[query_id] = [doc_id for doc_id, _ in hits]
        result.scores[query_id] = [float(score) for _, score in hits]
        result.latency_ms[query_id] = elapsed_ms
        result.pipeline_latency_ms[query_id] = elapsed_ms + sum(
            stage.pipeline_latency_ms[query_id] for stage in upstream
        )
    return result


def fusion_stage(mode: str, sparse: StageResult, dense: StageResult, *, k: int) -> StageResult:
    """Fuse each query's sparse and dense lists by document id with ``mode``; keep the top ``k``."""
    result = StageResult(f"hybrid:{mode}")
    for query_id in sparse.ranking:
        sides = {
            "dense": list(zip(dense.ranking[query_id], dense.scores[query_id])),
            "sparse": list(zip(sparse.ranking[query_id], sparse.scores[query_id])),
        }
        start = time.perf_counter()
        fused = fuse(sides, mode=mode)[:k]
        elapsed_ms = (time.perf_counter() - start) * 1000
        result.ranking[query_id] = [item.id for item in fused]
        result.scores[query_id] = [item.score for item in fused]
        result.latency_ms[query_id] = elapsed_ms
        # BM25 and dense run one after the other here; the pipeline pays both plus the fusion.
        result.pipeline_latency_ms[query_id] = (
            elapsed_ms + sparse.pipeline_latency_ms[query_id] + dense.pipeline_latency_ms[query_id]
        )
    return result
