"""Write an evaluation's results: ``results.json``, ``results.md`` and ``results.png``."""

from __future__ import annotations

import json
import logging
import math
import textwrap
from pathlib import Path

from rerank_ext_core._optional import require

__all__ = ["draw_chart", "markdown_table", "write_outputs"]

logger = logging.getLogger(__name__)


def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1f}"


def markdown_table(results: dict) -> str:
    """One row per stage: quality, the stage's own latency, and the pipeline's latency."""
    lines = [
        "| stage | nDCG@10 | Recall@100 | MRR@10 | stage p50 ms | stage p95 ms | pipeline p50 ms | pipeline p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for stage in results["stages"]:
        metrics, own, total = stage["metrics"], stage["latency"], stage["pipeline_latency"]
        lines.append(
            f"| {stage['name']} | {metrics['nDCG@10']:.4f} | {metrics['R@100']:.4f} | "
            f"{metrics['RR@10']:.4f} | {_ms(own['p50_ms'])} | {_ms(own['p95_ms'])} | "
            f"{_ms(total['p50_ms'])} | {_ms(total['p95_ms'])} |"
        )
    dataset = results["dataset"]
    lines += [
        "",
        f"{dataset['queries_evaluated']} queries evaluated over {dataset['documents']} documents "
        f"({dataset['queries_without_qrels']} queries skipped: no relevance judgment). "
        + (
            f"Rerankers reorder the top {results['config']['top_n']} of "
            f"hybrid:{results['config']['rerank_from']}. "
            if results["config"]["rerankers"] else ""
        )
        + f"Embedding model: `{results['config']['embedding_model']}`.",
    ]
    return "\n".join(lines) + "\n"


def draw_chart(results: dict, path: Path) -> None:
    """Quality by stage (left) and the per-query latency each stage's pipeline costs (right)."""
    matplotlib = require("matplotlib", feature="the evaluation chart", extra="eval")
    matplotlib.use("Agg", force=True)
    pyplot = require("matplotlib.pyplot", feature="the evaluation chart", extra="eval")
    stages = results["stages"]
    names = [textwrap.fill(stage["name"], 30) for stage in stages]
    positions = list(range(len(stages)))
    figure, (quality_axes, latency_axes) = pyplot.subplots(
        1, 2, figsize=(12, 0.55 * len(stages) + 2.2), sharey=True
    )
    height = 0.38
    quality_axes.barh(
        [p - height / 2 for p in positions], [s["metrics"]["nDCG@10"] for s in stages],
        height=height, label="nDCG@10", color="#3b6ea8",
    )
    quality_axes.barh(
        [p + height / 2 for p in positions], [s["metrics"]["RR@10"] for s in stages],
        height=height, label="MRR@10", color="#9ab9dd",
    )
    for p, stage in zip(positions, stages):
        quality_axes.text(stage["metrics"]["nDCG@10"] + 0.005, p - height / 2,
                          f"{stage['metrics']['nDCG@10']:.3f}", va="center", fontsize=8)
    quality_axes.set_yticks(positions, names)
    quality_axes.invert_yaxis()
    quality_axes.set_xlim(0, 1)
    quality_axes.set_xlabel("score")
    quality_axes.set_title("Quality by stage")
    quality_axes.legend(loc="lower right", fontsize=8)

    p50 = [s["pipeline_latency"]["p50_ms"] for s in stages]
    p95 = [s["pipeline_latency"]["p95_ms"] for s in stages]
    latency_axes.barh(positions, p95, color="#f2c38b", label="p95")
    latency_axes.barh(positions, p50, color="#d9822b", label="p50")
    latency_axes.set_xscale("log")
    latency_axes.set_xlabel("ms per query, whole pipeline (log scale)")
    latency_axes.set_title("Latency cost")
    latency_axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


def write_outputs(results: dict, output_dir: Path) -> dict[str, Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "json": output_dir / "results.json",
        "markdown": output_dir / "results.md",
        "chart": output_dir / "results.png",
    }
    files["json"].write_text(json.dumps(results, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    files["markdown"].write_text(markdown_table(results), encoding="utf-8")
    draw_chart(results, files["chart"])
    logger.info("Wrote %s", ", ".join(str(path) for path in files.values()))
    return files
