"""The rerank stage: each reranker named on the command line reorders the hybrid top-N.

A reranker is named ``KIND:MODEL`` (:func:`parse_reranker_spec`), loaded once
(:func:`build_scorer`), then run over every query's candidates and timed (:func:`rerank_stage`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rerank_ext_core._optional import require
from rerank_ext_core.evaluation.first_stage import StageResult
from rerank_ext_core.rerank import Scorer, blend_with_first_stage, rerank, validate_first_stage_weight

__all__ = ["RERANKER_KINDS", "RerankerSpec", "blended_stage_name", "build_scorer", "parse_reranker_spec", "rerank_stage"]

logger = logging.getLogger(__name__)

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


def blended_stage_name(name: str, first_stage_weight: float) -> str:
    return name if first_stage_weight == 0 else f"{name}, first stage x{first_stage_weight:g}"


def rerank_stage(
    name: str,
    scorer: Scorer,
    queries: dict[str, str],
    candidates: StageResult,
    doc_text: Callable[[str], str],
    *,
    top_n: int,
    progress: bool = False,
    first_stage_weights: Sequence[float] = (0.0,),
) -> list[StageResult]:
    """Rerank each query's first ``top_n`` candidates; the rest keep their order below them.

    One result per weight in ``first_stage_weights`` (0: the reranker alone; else its score
    blended with the first stage's, as ``first_stage_weight`` does in the adapters). Each
    candidate is scored once; the blends reuse those scores.
    Appending the remainder keeps Recall@100 comparable when ``top_n`` is smaller than 100.
    """
    tqdm = require("tqdm", feature="progress bars", extra="eval").tqdm
    weights = list(dict.fromkeys(validate_first_stage_weight(w) for w in first_stage_weights))
    results = {w: StageResult(blended_stage_name(name, w)) for w in weights}
    for query_id, query in tqdm(
        queries.items(), desc=f"rerank {name}", unit="query", disable=not progress
    ):
        head = candidates.ranking[query_id][:top_n]
        tail = candidates.ranking[query_id][top_n:]
        texts = [doc_text(doc_id) for doc_id in head]
        start = time.perf_counter()
        scores = rerank(scorer, query, texts)
        elapsed_ms = (time.perf_counter() - start) * 1000
        raw = [float("nan")] * len(head)
        for item in scores:
            raw[item.index] = item.score
        first_stage = candidates.scores.get(query_id, [])[:top_n] or None  # none: by position
        for weight, result in results.items():
            blended = blend_with_first_stage(raw, first_stage, weight)
            order = sorted(range(len(head)), key=lambda i: (-blended[i] if blended[i] == blended[i] else math.inf, i))
            result.ranking[query_id] = [head[i] for i in order] + tail
            result.scores[query_id] = [blended[i] for i in order] + [float("nan")] * len(tail)
            result.latency_ms[query_id] = elapsed_ms
            result.pipeline_latency_ms[query_id] = elapsed_ms + candidates.pipeline_latency_ms[query_id]
    return list(results.values())
