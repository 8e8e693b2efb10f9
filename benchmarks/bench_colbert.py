"""ColBERT (MaxSim) reranking: our ColBERTReranker against LlamaIndex ColbertRerank.

Same encoder (all-MiniLM-L6-v2 used as a late-interaction encoder: both load it from the same
folder), same 100 BM25 candidates per SciFact query, 2 torch threads. Ours is timed twice: with its
document-vector cache off (every candidate encoded, like the anchor) and with the cache on after
one pass over the same candidates (the repeated-candidates case of a live system).

    python benchmarks/bench_colbert.py [--queries 5] [--no-memory] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

LI_COLBERT = "LlamaIndex ColbertRerank"
OURS_LI = "ours: llamaindex ColBERTReranker (cache off)"
OURS_LC = "ours: langchain ColBERTReranker (cache off)"
OURS_LI_WARM = "ours: llamaindex ColBERTReranker (cache warm)"
ALL = [LI_COLBERT, OURS_LI, OURS_LC, OURS_LI_WARM]


def build_runner(name: str, model: str, candidates):
    from bench_rerank import _lc_runner, _li_runner

    if name == LI_COLBERT:
        from llama_index.postprocessor.colbert_rerank import ColbertRerank

        return _li_runner(ColbertRerank(model=model, tokenizer=model, top_n=100, device="cpu"))
    if name in (OURS_LI, OURS_LI_WARM):
        from llamaindex_rerank_ext import ColBERTReranker

        cache = 256 if name == OURS_LI_WARM else 0
        reranker = ColBERTReranker(model=model, device="cpu", top_n=100, cache_megabytes=cache)
        run = _li_runner(reranker)
        if name == OURS_LI_WARM:
            for query, texts in candidates:
                run(query, texts)
        return run
    if name == OURS_LC:
        from langchain_rerank_ext import ColBERTReranker

        return _lc_runner(ColBERTReranker(model=model, device="cpu", top_n=100, cache_megabytes=0))
    msg = f"unknown implementation {name!r}; choose from {ALL}"
    raise ValueError(msg)


def worker(name: str, model: str, candidates_file: str) -> None:
    _common.set_threads()
    candidates = json.loads(Path(candidates_file).read_text())
    run = build_runner(name, model, candidates if name == OURS_LI_WARM else [])
    for query, texts in candidates:
        run(query, texts)
    _common.report_peak_rss()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--candidates", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.model, args.candidates)
        return 0
    _common.set_threads()
    model = _common.minilm_path()
    candidates = _common.load_candidates(args.queries + 1)
    print(f"== ColBERT MaxSim, encoder {model}, {args.queries} queries x 100 candidates", flush=True)
    runners = {name: build_runner(name, model, candidates) for name in ALL}
    timings = _common.interleaved_timings(runners, candidates)
    del runners
    if not args.no_memory:
        with tempfile.TemporaryDirectory(prefix="rerank-ext-bench-") as tmp:
            candidates_file = Path(tmp) / "candidates.json"
            candidates_file.write_text(json.dumps(candidates[:2]))
            for name in ALL:
                timings[name].peak_rss_mb = _common.peak_rss_mb_of(
                    Path(__file__), "--worker", name, "--model", model, "--candidates", str(candidates_file)
                )
    # Ratios on CPU time (pairs per CPU-second of the process): wall time on a shared machine
    # mostly measures the neighbours.
    pps = {name: timing.pairs_per_cpu_second for name, timing in timings.items()}
    lines = [
        "## ColBERT (MaxSim) reranking",
        "",
        f"Machine: {_common.machine()}. Encoder: all-MiniLM-L6-v2 (no projection: MaxSim over its "
        f"token vectors), passages cut to {_common.PASSAGE_CHARS} characters, 100 BM25 candidates per "
        "SciFact query. Note: LlamaIndex ColbertRerank encodes one document per forward pass and has "
        "no [Q]/[D] markers or query padding; ours scores the ColBERT way, batched.",
        "",
        *_common.markdown_rows(timings, LI_COLBERT),
        "",
        f"- ours (LlamaIndex, cache off) vs LlamaIndex ColbertRerank: {pps[OURS_LI] / pps[LI_COLBERT]:.2f}x pairs per CPU-s",
        f"- ours (LangChain, cache off) vs LlamaIndex ColbertRerank: {pps[OURS_LC] / pps[LI_COLBERT]:.2f}x pairs per CPU-s",
        f"- ours (cache warm) vs LlamaIndex ColbertRerank: {pps[OURS_LI_WARM] / pps[LI_COLBERT]:.2f}x pairs per CPU-s",
        "",
    ]
    print("\n".join(lines), flush=True)
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
