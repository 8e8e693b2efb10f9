"""Training with the library trainers: sentence-transformers' ``CrossEncoderTrainer`` for
cross-encoders and ``MultiVectorEncoderTrainer`` for ColBERT (late interaction).

``train_group_size`` means what it means in FlagEmbedding: each training query brings one positive
and ``train_group_size - 1`` mined negatives (the contrastive losses add in-batch negatives).
Checkpoints go to ``work_dir`` every ``eval_steps`` and are scored on the dev split; the best one is
kept (``load_best_model_at_end``), and an interrupted run resumes from the last checkpoint.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rerank_ext_core._device import cpu_bf16_support, is_cuda
from rerank_ext_core._optional import require
from rerank_ext_core._validation import check_choice, check_number, check_positive_int
from rerank_ext_core.finetune.data import FinetuneInputError, TrainingGroup

__all__ = ["CROSS_ENCODER_LOSSES", "GPU_RECIPES", "KINDS", "RECIPES", "TrainingSettings", "TrainingResult", "recipe", "train"]

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("cross-encoder", "colbert")
CROSS_ENCODER_LOSSES: tuple[str, ...] = ("bce", "mnrl", "lambda", "listnet", "margin-mse")
COLBERT_LOSSES: tuple[str, ...] = ("mnrl", "margin-mse")
DISTILLATION_LOSSES: tuple[str, ...] = ("margin-mse",)
"""Losses that learn a teacher's scores (``pos_scores``/``neg_scores``) rather than binary labels."""


RECIPES: dict[str, dict[str, Any]] = {
    # Measured on SciFact with a MiniLM start (benchmarks/finetune_scifact.py, docs/finetune.md).
    # `rerank-ext finetune` uses these for every option left unset.
    "colbert": {"loss": "mnrl", "train_group_size": 4, "epochs": 2.0, "learning_rate": 3e-5, "max_length": 256,
                "eval_steps": 20, "teacher": None},
    "cross-encoder": {"loss": "lambda", "train_group_size": 4, "epochs": 1.0, "learning_rate": 1e-4,
                      "max_length": 192, "eval_steps": 23, "teacher": None},
}
"""The default recipe per model kind on a CPU: it trains within an hour on 2 cores. A
cross-encoder learns each query's group as a list (LambdaLoss): at the same budget it beat
MarginMSE distillation from MaxSim, binary cross-entropy and MNRL on the dev split."""

GPU_RECIPES: dict[str, dict[str, Any]] = {
    # Chosen on the dev split of the H200 sweeps (benchmarks/bench_cuda.py --plan sweep, --plan
    # longer): more steps and larger groups kept improving both kinds. About 2 minutes of training
    # on one H200; hours on 2 CPU cores.
    "colbert": {**RECIPES["colbert"], "train_group_size": 16, "epochs": 4.0, "eval_steps": 46},
    "cross-encoder": {**RECIPES["cross-encoder"], "train_group_size": 8, "epochs": 8.0, "eval_steps": 92},
}
"""The default recipe per model kind when training on a CUDA GPU."""


def recipe(kind: str, device: str) -> dict[str, Any]:
    """The options ``rerank-ext finetune`` uses for ``kind`` on ``device`` when none is given."""
    return dict((GPU_RECIPES if is_cuda(device) else RECIPES)[kind])


@dataclass(frozen=True)
class TrainingSettings:
    kind: str = "cross-encoder"
    loss: str = "bce"
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 16
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    max_length: int = 256
    eval_steps: int = 50
    seed: int = 42
    device: str = "cpu"
    precision: str = "auto"
    """``"fp32"``, ``"bf16"``, ``"fp16"``, or ``"auto"``: bf16 where the device supports it."""
    progress: bool = True

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, KINDS, label="model kind")
        losses = CROSS_ENCODER_LOSSES if self.kind == "cross-encoder" else COLBERT_LOSSES
        check_choice("loss", self.loss, losses, label=f"{self.kind} loss")
        check_number("epochs", self.epochs, low=0.01, example="epochs=1")
        if self.max_steps is not None:
            check_positive_int("max_steps", self.max_steps)
        for name in ("batch_size", "max_length", "eval_steps"):
            check_positive_int(name, getattr(self, name))
        check_number("learning_rate", self.learning_rate, low=1e-9, high=1.0, example="learning_rate=2e-5")
        check_number("warmup_ratio", self.warmup_ratio, low=0, high=1, example="warmup_ratio=0.1")
        check_choice("precision", self.precision, ("auto", "fp32", "bf16", "fp16"))


@dataclass
class TrainingResult:
    model_dir: Path
    best_checkpoint: str | None
    best_dev_metric: float | None
    steps: int
    seconds: float
    pairs_per_second: float
    learning_curve: list[dict[str, float]] = field(default_factory=list)
    """``{"step", "epoch", "loss"}`` and ``{"step", "dev_ndcg@10"}`` entries, in order."""


def _precision_flags(precision: str, device: str) -> dict[str, bool]:
    """Trainer flags for ``precision``; ``"auto"`` is bf16 on a GPU that has it (else fp16) and on
    a CPU with native bf16 (AVX-512 BF16 / AMX), fp32 elsewhere."""
    torch = require("torch", feature="rerank-ext finetune", extra="st")
    on_gpu = is_cuda(device)
    if precision == "auto":
        if on_gpu:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            supported, why = cpu_bf16_support()
            precision = "bf16" if supported else "fp32"
            if precision == "fp32":
                logger.info("Training in fp32: %s.", why)
    return {"bf16": precision == "bf16", "fp16": precision == "fp16", "use_cpu": not on_gpu}


def _rows(groups: Sequence[TrainingGroup], loss: str, negatives: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for group in groups:
        negs = list(group.negatives[:negatives])
        for positive in group.positives[:1]:
            if loss == "bce":
                rows.append({"query": group.query, "document": positive, "label": 1.0})
                rows.extend({"query": group.query, "document": neg, "label": 0.0} for neg in negs)
            elif loss == "margin-mse":
                if group.pos_scores is None or group.neg_scores is None:
                    where = f"query {group.query_id!r}" if group.query_id else f"query {group.query[:60]!r}"
                    msg = (
                        f"loss='margin-mse' learns a teacher's scores, but the {where} has none. Pass "
                        "--teacher KIND:MODEL (e.g. colbert:/path/to/model) to score the mined negatives, or give "
                        "pos_scores and neg_scores in the FlagEmbedding JSONL."
                    )
                    raise FinetuneInputError(msg)
                rows.append({
                    "query": group.query, "positive": positive, **{f"neg_{i + 1}": n for i, n in enumerate(negs)},
                    "label": [group.pos_scores[0], *group.neg_scores[: len(negs)]],
                })
            elif loss in ("lambda", "listnet"):
                rows.append({"query": group.query, "documents": [positive, *negs], "labels": [1] + [0] * len(negs)})
            else:
                rows.append({"query": group.query, "positive": positive, **{f"neg_{i + 1}": n for i, n in enumerate(negs)}})
    return rows


def _dev_samples(dev: Sequence[Sequence[Any]], kind: str) -> list[dict[str, Any]]:
    """``(query, positives, first-stage candidates, ...)`` as the trainers' reranking evaluators read them."""
    if kind == "cross-encoder":
        return [{"query": q, "positive": list(p), "documents": list(c)} for q, p, c, *_ in dev]
    return [{"query": q, "positive": list(p), "negative": [d for d in c if d not in set(p)]} for q, p, c, *_ in dev]


def _build_model(kind: str, base_model: str, max_length: int, device: str) -> Any:
    st = require("sentence_transformers", feature="rerank-ext finetune", extra="st")
    if kind == "cross-encoder":
        return st.CrossEncoder(base_model, num_labels=1, max_length=max_length, device=device, local_files_only=True)
    from rerank_ext_core.colbert import detect_colbert_layout

    if detect_colbert_layout(base_model) == "colbert":
        return st.MultiVectorEncoder(base_model, device=device, local_files_only=True)
    # A plain encoder: its own normalised token vectors, no random projection (as ColBERTScorer
    # reads a plain encoder), so training starts from MaxSim over the encoder's vectors.
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    local = {"local_files_only": True}
    transformer = Transformer(base_model, model_kwargs=local, processor_kwargs=local, config_kwargs=local,
                              query_length=32, document_length=max_length)
    modules = [transformer, MultiVectorMask(skiplist_words=list(string.punctuation)),
               Normalize(module_input_name="token_embeddings")]
    return st.MultiVectorEncoder(modules=modules, device=device)


def _loss(kind: str, loss: str, model: Any) -> Any:
    if kind == "colbert":
        from sentence_transformers.multi_vector_encoder import losses as multi_vector_losses

        if loss == "margin-mse":
            return multi_vector_losses.MultiVectorMarginMSELoss(model)
        return multi_vector_losses.MultiVectorMultipleNegativesRankingLoss(model)
    from sentence_transformers.cross_encoder import losses

    return {
        "margin-mse": lambda: losses.MarginMSELoss(model),
        "bce": lambda: losses.BinaryCrossEntropyLoss(model),
        "mnrl": lambda: losses.MultipleNegativesRankingLoss(model),
        "lambda": lambda: losses.LambdaLoss(model, mini_batch_size=16),
        "listnet": lambda: losses.ListNetLoss(model, mini_batch_size=16),
    }[loss]()


def train(
    groups: Sequence[TrainingGroup],
    dev: Sequence[Sequence[Any]],
    *,
    base_model: str,
    work_dir: Path,
    settings: TrainingSettings,
    train_group_size: int,
    resume: bool = False,
) -> tuple[Any, TrainingResult]:
    """Train on ``groups`` and keep the checkpoint with the best dev nDCG@10; returns the model
    (best weights loaded) and what happened. ``dev`` holds ``(query, positives, candidates, ...)``
    (a :class:`~rerank_ext_core.finetune.data.DevQuery`)."""
    import time

    transformers = require("transformers", feature="rerank-ext finetune", extra="st")
    datasets = require("datasets", feature="rerank-ext finetune", extra="st")
    st = require("sentence_transformers", feature="rerank-ext finetune", extra="st")
    transformers.set_seed(settings.seed)  # the new head is initialised when the model is built
    model = _build_model(settings.kind, base_model, settings.max_length, settings.device)
    rows = _rows(groups, settings.loss, train_group_size - 1)
    dataset = datasets.Dataset.from_list(rows)
    common = dict(
        output_dir=str(work_dir), per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate, warmup_steps=settings.warmup_ratio, seed=settings.seed,
        num_train_epochs=settings.epochs, max_steps=settings.max_steps or -1,
        eval_strategy="steps", eval_steps=settings.eval_steps, save_strategy="steps", save_steps=settings.eval_steps,
        save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="eval_dev_ndcg@10",
        greater_is_better=True, logging_steps=max(1, settings.eval_steps // 5), report_to="none",
        disable_tqdm=not settings.progress, dataloader_num_workers=0,
        **_precision_flags(settings.precision, settings.device),
    )
    if settings.kind == "cross-encoder":
        from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

        evaluator = CrossEncoderRerankingEvaluator(
            samples=_dev_samples(dev, "cross-encoder"), at_k=10, name="dev", batch_size=64,
            always_rerank_positives=False, write_csv=False,
        )
        args = st.CrossEncoderTrainingArguments(**common)
        trainer_class = st.CrossEncoderTrainer
    else:
        from sentence_transformers.multi_vector_encoder.evaluation import MultiVectorRerankingEvaluator

        evaluator = MultiVectorRerankingEvaluator(samples=_dev_samples(dev, "colbert"), at_k=10, name="dev", batch_size=32)
        args = st.MultiVectorEncoderTrainingArguments(
            **common, batch_sampler="no_duplicates", max_length={"query": 32, "document": settings.max_length},
        )
        trainer_class = st.MultiVectorEncoderTrainer
    trainer = trainer_class(
        model=model, args=args, train_dataset=dataset, loss=_loss(settings.kind, settings.loss, model),
        evaluator=evaluator,
    )
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if resume else None)
    seconds = time.perf_counter() - started
    steps = trainer.state.global_step
    pairs = steps * settings.batch_size * (train_group_size if settings.loss != "bce" else 1)
    curve: list[dict[str, float]] = []
    for entry in trainer.state.log_history:
        if "loss" in entry:
            curve.append({"step": entry["step"], "epoch": entry.get("epoch", 0.0), "loss": entry["loss"]})
        if "eval_dev_ndcg@10" in entry:
            curve.append({"step": entry["step"], "dev_ndcg@10": entry["eval_dev_ndcg@10"]})
    result = TrainingResult(
        model_dir=work_dir, best_checkpoint=trainer.state.best_model_checkpoint,
        best_dev_metric=trainer.state.best_metric, steps=steps, seconds=seconds,
        pairs_per_second=pairs / seconds if seconds else 0.0, learning_curve=curve,
    )
    return model, result
