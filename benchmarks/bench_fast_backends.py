"""Fast CPU backends of CrossEncoderReranker: speed against torch fp32 and the anchors, and fidelity
on a trained reranker.

    python benchmarks/bench_fast_backends.py [--queries 6] [--bert-queries 2] \
        [--trained finetune-runs/scifact-cross-encoder --fidelity-queries 100]

Speed: pairs per CPU-second of each path over SciFact BM25 candidates (passages cut to 600
characters), batch 32, max length 256, 2 threads, one warm-up query, the order rotated per query.
The figures are ratios against torch fp32 (our sentence-transformers backend) measured in the same
run; absolute times are context only. Fidelity (with ``--trained``): on SciFact test queries, the
hybrid top-20 reranked by each path against torch fp32 of the same checkpoint: Spearman, top-10
overlap, and the nDCG@10 change.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

BATCH_SIZE = 32
MAX_LENGTH = 256
TORCH_FP32 = "torch fp32 (ours, st backend)"
PATHS: dict[str, dict] = {
    TORCH_FP32: {"backend": "sentence-transformers", "precision": "fp32"},
    "torch bf16 autocast": {"backend": "sentence-transformers", "precision": "bf16"},
    "onnxruntime fp32": {"backend": "onnxruntime", "precision": "fp32"},
    "onnxruntime int8": {"backend": "onnxruntime", "precision": "int8"},
    "openvino fp32": {"backend": "openvino", "precision": "fp32"},
    "openvino bf16": {"backend": "openvino", "precision": "bf16"},
    "openvino int8": {"backend": "openvino", "precision": "int8"},
}
ANCHORS = ("LlamaIndex SentenceTransformerRerank", "LlamaIndex FlagEmbeddingReranker", "LangChain CrossEncoderReranker")


def ours(options: dict, checkpoint: str):
    from rerank_ext_core.cross_encoder import CrossEncoderScorer

    return CrossEncoderScorer(checkpoint, device="cpu", batch_size=BATCH_SIZE, max_length=MAX_LENGTH, normalize=False, **options)


def anchor_runner(name: str, checkpoint: str):
    if name == "LlamaIndex SentenceTransformerRerank":
        from llama_index.core.postprocessor import SentenceTransformerRerank
        from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

        post = SentenceTransformerRerank(model=checkpoint, top_n=100, device="cpu")
        return lambda q, texts: post.postprocess_nodes([NodeWithScore(node=TextNode(text=t)) for t in texts], QueryBundle(q))
    if name == "LlamaIndex FlagEmbeddingReranker":
        from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
        from llama_index.postprocessor.flag_embedding_reranker import FlagEmbeddingReranker

        post = FlagEmbeddingReranker(model=checkpoint, top_n=100, use_fp16=False)
        return lambda q, texts: post.postprocess_nodes([NodeWithScore(node=TextNode(text=t)) for t in texts], QueryBundle(q))
    from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
    from langchain_community.cross_encoders import HuggingFaceCrossEncoder
    from langchain_core.documents import Document

    compressor = CrossEncoderReranker(model=HuggingFaceCrossEncoder(model_name=checkpoint, model_kwargs={"device": "cpu"}), top_n=100)
    return lambda q, texts: compressor.compress_documents([Document(page_content=t) for t in texts], q)


def speed(label: str, checkpoint: str, candidates) -> list[str]:
    print(f"\n== {label}: {len(candidates) - 1} timed queries x {len(candidates[0][1])} candidates", flush=True)
    runners = {name: (lambda scorer: (lambda q, texts: scorer.score(q, texts)))(ours(options, checkpoint))
               for name, options in PATHS.items()}
    runners.update({name: anchor_runner(name, checkpoint) for name in ANCHORS})
    timings = _common.interleaved_timings(runners, candidates)
    pps = {name: t.pairs_per_cpu_second for name, t in timings.items()}
    lines = [f"### {label}", "", "| path | pairs/CPU-s | vs torch fp32 |", "|---|---:|---:|"]
    lines += [f"| {name} | {pps[name]:.2f} | {pps[name] / pps[TORCH_FP32]:.2f}x |" for name in runners]
    best = max(PATHS, key=lambda name: pps[name])
    lines += ["", f"- fastest of ours: {best}, {pps[best] / pps[TORCH_FP32]:.2f}x torch fp32"]
    lines += [f"- {best} vs {anchor}: {pps[best] / pps[anchor]:.2f}x pairs per CPU-s" for anchor in ANCHORS]
    print("\n".join(lines), flush=True)
    return lines + [""]


def fidelity(checkpoint: str, n_queries: int, top_k: int = 20, *, paths: dict[str, dict] = PATHS,
             make_scorer=ours, embedding_model: str | None = None, source: str = "hybrid",
             title: str = "Fidelity on a trained reranker") -> list[str]:
    """SciFact test queries, the ``source`` top-``top_k``, reranked by each of ``paths`` (the first is the
    reference): Spearman and top-10 overlap against the reference, the nDCG@10 change, pairs/s."""
    import numpy as np
    from scipy.stats import spearmanr

    from _scifact import load_scifact, ndcg_at_10
    from rerank_ext_core.finetune.data import Corpus
    from rerank_ext_core.finetune.retrievers import corpus_retriever

    corpus, queries, qrels = load_scifact(_common.SCIFACT, "test")
    ids = list(corpus)
    retrieve = corpus_retriever(Corpus(ids, [corpus[i] for i in ids]), source, embedding_model=embedding_model, depth=top_k)
    chosen = list(queries.items())[:n_queries]
    candidates = {qid: [doc_id for doc_id, _ in retrieve(text, top_k)] for qid, text in chosen}
    scores, pairs_per_second, failed = {}, {}, {}
    for name, options in paths.items():
        warm_qid, warm_text = chosen[0]
        try:
            scorer = make_scorer(options, checkpoint)
            scorer.score(warm_text, [corpus[d] for d in candidates[warm_qid]])
        except Exception as error:  # a path this machine lacks (or cannot run) is reported, not fatal
            failed[name] = " ".join(f"{type(error).__name__}: {error}".split()).replace("|", "/")
            continue
        started = time.perf_counter()
        scores[name] = {qid: scorer.score(text, [corpus[d] for d in candidates[qid]]) for qid, text in chosen}
        pairs_per_second[name] = sum(len(c) for c in candidates.values()) / (time.perf_counter() - started)
        print(f"scored {name}", flush=True)
    judged = {qid: qrels[qid] for qid, _ in chosen}
    reference_name = next(iter(paths))
    if reference_name not in scores:
        msg = f"The reference path {reference_name!r} failed, so nothing can be compared with it: {failed[reference_name]}"
        raise RuntimeError(msg)
    reference = scores[reference_name]

    def run_of(path_scores):
        return {qid: [candidates[qid][i] for i in np.argsort(-np.asarray(s), kind="stable")] for qid, s in path_scores.items()}

    base_ndcg = ndcg_at_10(run_of(reference), judged)
    first_stage = ndcg_at_10({qid: candidates[qid] for qid, _ in chosen}, judged)
    lines = [f"### {title}: {checkpoint}", "",
             f"{n_queries} SciFact test queries, {source} top-{top_k} ({source} alone: nDCG@10 {first_stage:.4f}); "
             f"{reference_name} reranked: nDCG@10 {base_ndcg:.4f}.", "",
             f"| path | Spearman vs {reference_name} | top-10 overlap | nDCG@10 change | pairs/s |", "|---|---:|---:|---:|---:|"]
    for name in scores:
        rhos, overlaps = [], []
        for qid, _ in chosen:
            a, b = np.asarray(scores[name][qid]), np.asarray(reference[qid])
            rhos.append(float(spearmanr(a, b).statistic))
            overlaps.append(len(set(np.argsort(-a)[:10]) & set(np.argsort(-b)[:10])) / 10)
        delta = ndcg_at_10(run_of(scores[name]), judged) - base_ndcg
        lines.append(f"| {name} | {np.mean(rhos):.4f} | {np.mean(overlaps):.3f} | {delta:+.4f} | {pairs_per_second[name]:.0f} |")
    lines += [f"| {name} | failed: {why} | | | |" for name, why in failed.items()]
    print("\n".join(lines), flush=True)
    return lines + [""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=6, help="timed queries, MiniLM-L6 shape")
    parser.add_argument("--bert-queries", type=int, default=2, help="timed queries, BERT-base shape (0 skips)")
    parser.add_argument("--candidates", type=int, default=32, help="candidates per query")
    parser.add_argument("--trained", help="a trained cross-encoder for the fidelity table (e.g. from finetune_scifact.py)")
    parser.add_argument("--fidelity-queries", type=int, default=100)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    _common.set_threads()
    from rerank_ext_core._device import cpu_bf16_support

    lines = ["## Fast CPU backends (cross-encoder)", "",
             f"Machine: {_common.machine()}; bf16: {cpu_bf16_support()[1]}. Batch {BATCH_SIZE}, max length "
             f"{MAX_LENGTH}, {args.candidates} BM25 candidates per SciFact query (passages cut to "
             f"{_common.PASSAGE_CHARS} characters), ratios of pairs per CPU-second.", ""]
    with tempfile.TemporaryDirectory(prefix="rerank-ext-fast-") as tmp:
        checkpoints = _common.build_cross_encoder_checkpoints(Path(tmp))
        candidates = _common.load_candidates(max(args.queries, args.bert_queries) + 1, args.candidates)
        lines += speed("MiniLM-L6 shape (ms-marco-MiniLM-L6 compute)", str(checkpoints["minilm-l6"]), candidates[: args.queries + 1])
        if args.bert_queries:
            lines += speed("BERT-base shape (bge-reranker-base compute)", str(checkpoints["bert-base"]), candidates[: args.bert_queries + 1])
    if args.trained:
        lines += fidelity(args.trained, args.fidelity_queries)
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
