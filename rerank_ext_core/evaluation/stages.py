"""The stages the evaluation runs, each a small function over ids, texts and scores.

First stages (BM25, dense) map a query to ``[(doc_id, score)]`` best first; hybrid fuses them by
document id; a reranker reorders the hybrid top-N. Every stage is timed per query.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rerank_ext_core._optional import require
from rerank_ext_core.rerank import Scorer, rerank

__all__ = [
    "RERANKER_KINDS",
    "RerankerSpec",
    "StageResult",
    "build_scorer",
    "parse_reranker_spec",
    "progress_enabled",
    "rerank_stage",
    "run_first_stage",
]

logger = logging.getLogger(__name__)

SearchFn = Callable[[str], list[tuple[str, float]]]


def progress_enabled() -> bool:
    """Progress bars only when stderr is a terminal (never in logs, CI or pipes)."""
    return sys.stderr.isatty()


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


def run_first_stage(
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


# --- rerankers ----------------------------------------------------------------------------------

RERANKER_KINDS = ("cross-encoder", "colbert")
_GENERIC_FOLDERS = {"model", "models", "checkpoint", "final", "snapshot"}


@dataclass(frozen=True)
class RerankerSpec:
    """``kind:model`` from the command line, e.g. ``colbert:/models/minilm``."""

    kind: str
    model: str

    @property
    def name(self) -> str:
        parts = [part for part in self.model.replace("\\", "/").split("/") if part]
        # A folder named like "model" says nothing: keep its parent's name too.
        label = "/".join(parts[-2:]) if len(parts) > 1 and parts[-1] in _GENERIC_FOLDERS else parts[-1]
        return f"{self.kind}:{label}"


def parse_reranker_spec(spec: str) -> RerankerSpec:
    kind, sep, model = spec.partition(":")
    kind = kind.strip().lower()
    if not sep or not model.strip() or kind not in RERANKER_KINDS:
        msg = (
            f"--reranker {spec!r} is not understood: write KIND:MODEL with KIND one of "
            f"{', '.join(RERANKER_KINDS)} and MODEL a local folder or hub id, e.g. "
            "--reranker colbert:/path/to/all-MiniLM-L6-v2 or --reranker cross-encoder:BAAI/bge-reranker-base."
        )
        raise ValueError(msg)
    return RerankerSpec(kind, model.strip())


def build_scorer(spec: RerankerSpec, **options: object) -> Scorer:
    """Load the scorer named by ``spec`` (model files are loaded here, once)."""
    if spec.kind == "cross-encoder":
        from rerank_ext_core.cross_encoder import CrossEncoderScorer

        return CrossEncoderScorer(model=spec.model, **options)
    from rerank_ext_core.colbert import ColBERTScorer

    return ColBERTScorer(model=spec.model, **options)


def rerank_stage(
    name: str,
    scorer: Scorer,
    queries: dict[str, str],
    candidates: StageResult,
    doc_text: Callable[[str], str],
    *,
    top_n: int,
    progress: bool = False,
) -> StageResult:
    """Rerank each query's first ``top_n`` candidates; the rest keep their order below them.

    Appending the remainder keeps Recall@100 comparable when ``top_n`` is smaller than 100.
    """
    tqdm = require("tqdm", feature="progress bars", extra="eval").tqdm
    result = StageResult(name)
    for query_id, query in tqdm(
        queries.items(), desc=f"rerank {name}", unit="query", disable=not progress
    ):
        head = candidates.ranking[query_id][:top_n]
        tail = candidates.ranking[query_id][top_n:]
        texts = [doc_text(doc_id) for doc_id in head]
        start = time.perf_counter()
        ranked = rerank(scorer, query, texts)
        elapsed_ms = (time.perf_counter() - start) * 1000
        result.ranking[query_id] = [head[item.index] for item in ranked] + tail
        result.scores[query_id] = [item.score for item in ranked] + [float("nan")] * len(tail)
        result.latency_ms[query_id] = elapsed_ms
        result.pipeline_latency_ms[query_id] = elapsed_ms + candidates.pipeline_latency_ms[query_id]
    return result


# --- dense --------------------------------------------------------------------------------------


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
