"""Ranking quality with a real model: MaxSim over MiniLM token vectors reranks the BM25 top-50."""

import random

import pytest

from rerank_ext_core.bm25 import BM25Index
from rerank_ext_core.colbert import ColBERTScorer
from rerank_ext_core.evaluation.dataset import load_beir
from rerank_ext_core.evaluation.metrics import evaluate_run
from rerank_ext_core.rerank import rerank

SAMPLE_SIZE = 20
SAMPLE_SEED = 13
CANDIDATES = 50


@pytest.mark.slow
def test_maxsim_reranking_improves_bm25_on_scifact(scifact_dir, minilm_path, capsys):
    data = load_beir(scifact_dir, qrels_file=scifact_dir / "qrels.tsv")
    sample = sorted(random.Random(SAMPLE_SEED).sample(sorted(data.qrels), SAMPLE_SIZE))
    qrels = {qid: data.qrels[qid] for qid in sample}
    text_of = dict(zip(data.doc_ids, data.doc_texts))
    index = BM25Index()  # the library's tokenizer: stopwords, English stemming
    index.upsert(data.doc_ids, data.doc_texts)

    scorer = ColBERTScorer(minilm_path, device="cpu", batch_size=64)
    bm25_run, reranked_run = {}, {}
    for qid in sample:
        candidates = [doc_id for doc_id, _ in index.search(data.queries[qid], CANDIDATES)]
        bm25_run[qid] = candidates
        ranked = rerank(scorer, data.queries[qid], [text_of[doc_id] for doc_id in candidates])
        reranked_run[qid] = [candidates[r.index] for r in ranked]

    before = evaluate_run(qrels, bm25_run)[0]["nDCG@10"]
    after = evaluate_run(qrels, reranked_run)[0]["nDCG@10"]
    with capsys.disabled():
        print(f"\nSciFact sample of {SAMPLE_SIZE} queries, BM25 top-{CANDIDATES}: nDCG@10 BM25 {before:.4f} -> MaxSim(MiniLM) {after:.4f}")
    assert after > before
