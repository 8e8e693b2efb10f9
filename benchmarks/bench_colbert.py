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
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

LI_COLBERT = "LlamaIndex ColbertRerank"
OURS_LI = "ours: llamaindex ColBERTReranker (cache off)"
OURS_LC = "ours: langchain ColBERTReranker (cache off)"
OURS_LI_WARM = "ours: llamaindex ColBERTReranker (cache warm)"
OURS_LI_STORED = "ours: llamaindex ColBERTReranker (vectors stored at index time, first query)"
ALL = [LI_COLBERT, OURS_LI, OURS_LC, OURS_LI_WARM, OURS_LI_STORED]


def stored_vectors(model: str, candidates):
    """A Chroma collection holding every candidate passage and a ColBERTVectorStore following it:
    the documents are encoded once, at index time (not timed), as in a live system."""
    import chromadb

    from rerank_ext_core.colbert import ColBERTScorer
    from rerank_ext_core.colbert_store import ColBERTVectorStore
    from rerank_ext_core.hybrid import ChromaHybridSearch

    texts = sorted({text for _, passages in candidates for text in passages})
    collection = chromadb.EphemeralClient().create_collection(f"bench-{uuid.uuid4().hex[:12]}", embedding_function=None)
    for start in range(0, len(texts), 1000):
        batch = texts[start : start + 1000]
        collection.add(ids=[f"d{start + i}" for i in range(len(batch))], documents=batch,
                       embeddings=[[float(len(t) % 7), 1.0] for t in batch])
    store = ColBERTVectorStore(ColBERTScorer(model, device="cpu", cache_megabytes=0))
    ChromaHybridSearch(collection, colbert_vectors=store)
    return store


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
    if name == OURS_LI_STORED:
        from llamaindex_rerank_ext import ColBERTReranker

        store = stored_vectors(model, candidates)
        return _li_runner(ColBERTReranker(model=model, device="cpu", top_n=100, cache_megabytes=0, vector_store=store))
    if name == OURS_LC:
        from langchain_rerank_ext import ColBERTReranker

        return _lc_runner(ColBERTReranker(model=model, device="cpu", top_n=100, cache_megabytes=0))
    msg = f"unknown implementation {name!r}; choose from {ALL}"
    raise ValueError(msg)


def storage_lines(model: str, candidates) -> list[str]:
    """Bytes per token of the stored vectors (fp16), memory at 100k documents, and what int8
    (per-token scale) would cost in ranking agreement, measured on these candidates."""
    import numpy as np
    from scipy.stats import spearmanr

    from rerank_ext_core.colbert import ColBERTScorer, maxsim_scores
    from rerank_ext_core.colbert_store import text_key

    store = stored_vectors(model, candidates)
    scorer = ColBERTScorer(model, device="cpu", cache_megabytes=0)
    per_token = store.nbytes / max(1, store.tokens)
    tokens_per_doc = store.tokens / max(1, len(store))
    rhos, overlaps = [], []
    for query, texts in candidates:
        q = scorer._encoder.encode_query(query)
        fp16 = [store.vectors_for(text_key(t)).numpy() for t in texts]
        int8 = []
        for v in fp16:
            scale = np.abs(v).max(axis=1, keepdims=True) / 127 + 1e-12
            int8.append(np.round(v / scale).astype(np.int8).astype(np.float32) * scale)
        a = np.array(maxsim_scores(q, fp16, length_normalize=False))
        b = np.array(maxsim_scores(q, int8, length_normalize=False))
        rhos.append(float(spearmanr(a, b).statistic))
        overlaps.append(len(set(np.argsort(-a)[:10]) & set(np.argsort(-b)[:10])) / 10)
    dim = per_token / 2
    return [
        f"- stored vectors: fp16, {per_token:.0f} bytes per token ({dim:.0f}-d), {tokens_per_doc:.0f} tokens per "
        f"passage here: {per_token * tokens_per_doc * 100_000 / 2**30:.1f} GiB at 100k such documents "
        f"(int8 with a per-token scale would be {(dim + 4) * tokens_per_doc * 100_000 / 2**30:.1f} GiB; a 128-d "
        f"ColBERT projection at fp16: {256 * tokens_per_doc * 100_000 / 2**30:.1f} GiB)",
        f"- int8 instead of fp16, measured on these candidates: Spearman {np.mean(rhos):.4f}, top-10 overlap "
        f"{np.mean(overlaps):.3f} (fp16 is what the store keeps today)",
        "",
    ]


def worker(name: str, model: str, candidates_file: str) -> None:
    _common.set_threads()
    candidates = json.loads(Path(candidates_file).read_text())
    run = build_runner(name, model, candidates if name in (OURS_LI_WARM, OURS_LI_STORED) else [])
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
        f"- ours (vectors stored at index time; every query a first query for the reranker) vs LlamaIndex "
        f"ColbertRerank: {pps[OURS_LI_STORED] / pps[LI_COLBERT]:.1f}x pairs per CPU-s (goal >= 100x)",
        "",
        *storage_lines(model, candidates),
    ]
    print("\n".join(lines), flush=True)
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
