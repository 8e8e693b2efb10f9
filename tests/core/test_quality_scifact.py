"""Ranking quality with a real model: MaxSim over MiniLM token vectors reranks the BM25 top-50."""

import json
import random

import pytest

from rerank_ext_core.colbert import ColBERTScorer

SAMPLE_SIZE = 20
SAMPLE_SEED = 13
CANDIDATES = 50


def _read_jsonl(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _ndcg_at_10(qrels, run):
    import ir_measures
    from ir_measures import nDCG

    return ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10]


@pytest.mark.slow
def test_maxsim_reranking_improves_bm25_on_scifact(scifact_dir, minilm_path, capsys):
    import bm25s
    import Stemmer

    corpus = _read_jsonl(scifact_dir / "corpus.jsonl")
    queries = {q["_id"]: q["text"] for q in _read_jsonl(scifact_dir / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    with open(scifact_dir / "qrels.tsv", encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            qid, did, rel = line.split("\t")
            qrels.setdefault(qid, {})[did] = int(rel)
    sample = sorted(random.Random(SAMPLE_SEED).sample(sorted(qrels), SAMPLE_SIZE))
    qrels = {qid: qrels[qid] for qid in sample}

    ids = [doc["_id"] for doc in corpus]
    texts = [f"{doc.get('title', '')} {doc['text']}".strip() for doc in corpus]
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    tokens = bm25s.tokenize([queries[q] for q in sample], stopwords="en", stemmer=stemmer, show_progress=False)
    results, scores = retriever.retrieve(tokens, k=CANDIDATES, show_progress=False)

    scorer = ColBERTScorer(minilm_path, device="cpu", batch_size=64)
    bm25_run, reranked_run = {}, {}
    for row, qid in enumerate(sample):
        candidates = [int(i) for i in results[row]]
        bm25_run[qid] = {ids[i]: float(s) for i, s in zip(candidates, scores[row])}
        maxsim = scorer.score(queries[qid], [texts[i] for i in candidates])
        reranked_run[qid] = {ids[i]: s for i, s in zip(candidates, maxsim)}

    before, after = _ndcg_at_10(qrels, bm25_run), _ndcg_at_10(qrels, reranked_run)
    with capsys.disabled():
        print(f"\nSciFact sample of {SAMPLE_SIZE} queries, BM25 top-{CANDIDATES}: nDCG@10 BM25 {before:.4f} -> MaxSim(MiniLM) {after:.4f}")
    assert after > before
