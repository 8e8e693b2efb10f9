"""Cross-encoder reranking: ours (both adapters, both backends) against the anchors' rerankers.

Same checkpoint, same 100 BM25 candidates per SciFact query, 2 torch threads, batch size 32,
max length 512 everywhere it can be set. Two checkpoints: MiniLM-L6 shape (built from the
all-MiniLM-L6-v2 weights) and BERT-base shape (random weights, built here). Prints pairs/s, p50/p95
per query, peak RSS (each implementation alone in a fresh interpreter) and the ratios; our overhead
over the raw library call is the number to keep under 5 %.

    python benchmarks/bench_rerank.py [--queries 8] [--bert-queries 3] [--no-memory]
        [--memory-for minilm-l6,bert-base] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

BATCH_SIZE = 32
MAX_LENGTH = 512

RAW_ST = "raw sentence-transformers CrossEncoder.predict"
RAW_FLAG = "raw FlagEmbedding FlagReranker.compute_score"
OURS_CORE_ST = "ours: rerank_ext_core rerank(CrossEncoderScorer st)"
OURS_LI_ST = "ours: llamaindex CrossEncoderReranker (st)"
OURS_LC_ST = "ours: langchain CrossEncoderReranker (st)"
OURS_LI_FLAG = "ours: llamaindex CrossEncoderReranker (flag)"
OURS_LC_FLAG = "ours: langchain CrossEncoderReranker (flag)"
LI_ST = "LlamaIndex SentenceTransformerRerank"
LI_FLAG = "LlamaIndex FlagEmbeddingReranker"
LC_ST = "LangChain CrossEncoderReranker + HuggingFaceCrossEncoder"
ALL = [RAW_ST, RAW_FLAG, OURS_CORE_ST, OURS_LI_ST, OURS_LC_ST, OURS_LI_FLAG, OURS_LC_FLAG, LI_ST, LI_FLAG, LC_ST]


def _li_runner(postprocessor):
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    cache: dict[int, list] = {}

    def run(query, texts):
        key = id(texts)
        if key not in cache:  # the nodes exist before reranking, in a real pipeline too
            cache[key] = [NodeWithScore(node=TextNode(text=t), score=1.0) for t in texts]
        return postprocessor.postprocess_nodes(cache[key], query_bundle=QueryBundle(query))

    return run


def _lc_runner(compressor):
    from langchain_core.documents import Document

    cache: dict[int, list] = {}

    def run(query, texts):
        key = id(texts)
        if key not in cache:
            cache[key] = [Document(page_content=t) for t in texts]
        return compressor.compress_documents(cache[key], query)

    return run


def build_runner(name: str, checkpoint: str):
    """One implementation, loaded, as ``run(query, texts)``."""
    if name == RAW_ST:
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(checkpoint, device="cpu", max_length=MAX_LENGTH)
        return lambda q, texts: model.predict([(q, t) for t in texts], batch_size=BATCH_SIZE, show_progress_bar=False)
    if name == RAW_FLAG:
        from FlagEmbedding import FlagReranker

        model = FlagReranker(checkpoint, use_fp16=False, devices="cpu", batch_size=BATCH_SIZE, max_length=MAX_LENGTH)
        return lambda q, texts: model.compute_score([(q, t) for t in texts], batch_size=BATCH_SIZE, max_length=MAX_LENGTH)
    if name == OURS_CORE_ST:
        from rerank_ext_core.cross_encoder import CrossEncoderScorer
        from rerank_ext_core.rerank import rerank

        scorer = CrossEncoderScorer(checkpoint, backend="sentence-transformers", device="cpu",
                                    batch_size=BATCH_SIZE, max_length=MAX_LENGTH)
        return lambda q, texts: rerank(scorer, q, texts)
    if name in (OURS_LI_ST, OURS_LI_FLAG):
        from llamaindex_rerank_ext import CrossEncoderReranker

        backend = "flag" if name == OURS_LI_FLAG else "sentence-transformers"
        return _li_runner(CrossEncoderReranker(model=checkpoint, backend=backend, device="cpu", top_n=100,
                                               batch_size=BATCH_SIZE, max_length=MAX_LENGTH))
    if name in (OURS_LC_ST, OURS_LC_FLAG):
        from langchain_rerank_ext import CrossEncoderReranker

        backend = "flag" if name == OURS_LC_FLAG else "sentence-transformers"
        return _lc_runner(CrossEncoderReranker(model=checkpoint, backend=backend, device="cpu", top_n=100,
                                               batch_size=BATCH_SIZE, max_length=MAX_LENGTH))
    if name == LI_ST:
        from llama_index.core.postprocessor import SentenceTransformerRerank

        return _li_runner(SentenceTransformerRerank(model=checkpoint, top_n=100, device="cpu"))
    if name == LI_FLAG:
        from llama_index.postprocessor.flag_embedding_reranker import FlagEmbeddingReranker

        return _li_runner(FlagEmbeddingReranker(model=checkpoint, top_n=100, use_fp16=False))
    if name == LC_ST:
        from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
        from langchain_community.cross_encoders import HuggingFaceCrossEncoder

        encoder = HuggingFaceCrossEncoder(model_name=checkpoint, model_kwargs={"device": "cpu"})
        return _lc_runner(CrossEncoderReranker(model=encoder, top_n=100))
    msg = f"unknown implementation {name!r}; choose from {ALL}"
    raise ValueError(msg)


def worker(name: str, checkpoint: str, candidates_file: str) -> None:
    _common.set_threads()
    candidates = json.loads(Path(candidates_file).read_text())
    run = build_runner(name, checkpoint)
    for query, texts in candidates[:2]:
        run(query, texts)
    _common.report_peak_rss()


def bench_checkpoint(label: str, checkpoint: str, candidates, *, memory: bool, workdir: Path) -> list[str]:
    print(f"\n== {label}: {checkpoint}, {len(candidates)} queries x {len(candidates[0][1])} candidates", flush=True)
    runners = {name: build_runner(name, checkpoint) for name in ALL}
    timings = _common.interleaved_timings(runners, candidates)
    del runners
    if memory:
        candidates_file = workdir / "candidates.json"
        candidates_file.write_text(json.dumps(candidates[:2]))
        for name in ALL:
            timings[name].peak_rss_mb = _common.peak_rss_mb_of(
                Path(__file__), "--worker", name, "--checkpoint", checkpoint, "--candidates", str(candidates_file)
            )
    rows = _common.markdown_rows(timings, RAW_ST)
    # Ratios on CPU time (pairs per CPU-second of the process): wall time on a shared machine
    # mostly measures the neighbours.
    pps = {name: timing.pairs_per_cpu_second for name, timing in timings.items()}
    ratios = [
        ("our overhead over the raw call, core (st)", pps[RAW_ST] / pps[OURS_CORE_ST] - 1),
        ("our overhead over the raw call, LlamaIndex (st)", pps[RAW_ST] / pps[OURS_LI_ST] - 1),
        ("our overhead over the raw call, LangChain (st)", pps[RAW_ST] / pps[OURS_LC_ST] - 1),
        ("our overhead over the raw call, LlamaIndex (flag)", pps[RAW_FLAG] / pps[OURS_LI_FLAG] - 1),
        ("our overhead over the raw call, LangChain (flag)", pps[RAW_FLAG] / pps[OURS_LC_FLAG] - 1),
    ]
    speedups = [
        ("ours LlamaIndex (st) vs LlamaIndex SentenceTransformerRerank", pps[OURS_LI_ST] / pps[LI_ST]),
        ("ours LlamaIndex (flag) vs LlamaIndex FlagEmbeddingReranker", pps[OURS_LI_FLAG] / pps[LI_FLAG]),
        ("ours LangChain (st) vs LangChain CrossEncoderReranker", pps[OURS_LC_ST] / pps[LC_ST]),
    ]
    lines = [f"### {label}", "", *rows, ""]
    lines += [f"- {text}: {value * 100:+.1f} % (target < 5 %)" for text, value in ratios]
    lines += [f"- {text}: {value:.2f}x pairs per CPU-s" for text, value in speedups]
    print("\n".join(lines), flush=True)
    return lines + [""]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=8, help="timed queries, MiniLM-L6 shape")
    parser.add_argument("--bert-queries", type=int, default=3, help="timed queries, BERT-base shape (0 skips it)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-implementation peak RSS runs")
    parser.add_argument("--memory-for", default="minilm-l6,bert-base",
                        help="checkpoints whose peak RSS is measured (comma-separated; default both)")
    parser.add_argument("--markdown", type=Path, help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--candidates", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.checkpoint, args.candidates)
        return 0
    _common.set_threads()
    lines = [
        "## Cross-encoder reranking",
        "",
        f"Machine: {_common.machine()}. Batch size {BATCH_SIZE}, max length {MAX_LENGTH}, passages cut to "
        f"{_common.PASSAGE_CHARS} characters, 100 BM25 candidates per SciFact query, one warm-up query, the "
        "order of implementations rotated per query. Peak RSS: each implementation alone in a fresh "
        "interpreter (load + 2 queries).",
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="rerank-ext-bench-") as tmp:
        workdir = Path(tmp)
        checkpoints = _common.build_cross_encoder_checkpoints(workdir)
        queries = max(args.queries, args.bert_queries) + 1
        candidates = _common.load_candidates(queries)
        lines += bench_checkpoint("MiniLM-L6 shape (all-MiniLM-L6-v2 weights + 1-logit head)",
                                  str(checkpoints["minilm-l6"]), candidates[: args.queries + 1],
                                  memory=not args.no_memory and "minilm-l6" in args.memory_for, workdir=workdir)
        if args.bert_queries:
            lines += bench_checkpoint("BERT-base shape (12 x 768, random weights)", str(checkpoints["bert-base"]),
                                      candidates[: args.bert_queries + 1],
                                      memory=not args.no_memory and "bert-base" in args.memory_for, workdir=workdir)
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
