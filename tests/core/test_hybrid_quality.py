"""Quality on SciFact with the real MiniLM encoder (slow: embeds the corpus once, cached on disk
in the same cache as rerank-ext eval: $RERANK_EXT_CACHE or ~/.cache/rerank-ext)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _scifact import PrecomputedEmbedder, embed_cached, load_scifact, ndcg_at_10  # noqa: E402

from rerank_ext_core.bm25 import BM25Index  # noqa: E402
from rerank_ext_core.embedding import SentenceTransformerEmbedder  # noqa: E402
from rerank_ext_core.hybrid import ChromaHybridSearch  # noqa: E402

chromadb = pytest.importorskip("chromadb")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def scifact_search(scifact_dir, minilm_path):
    corpus, queries, qrels = load_scifact(scifact_dir)
    ids = list(corpus)
    texts = [corpus[i] for i in ids]
    embedder = SentenceTransformerEmbedder(minilm_path)
    doc_vectors = embed_cached(embedder, texts, "scifact-minilm")
    query_texts = list(queries.values())
    query_vectors = embed_cached(embedder, query_texts, "scifact-queries-minilm")
    collection = chromadb.EphemeralClient().create_collection("scifact_quality", embedding_function=None)
    for start in range(0, len(ids), 2000):
        collection.add(ids=ids[start : start + 2000], documents=texts[start : start + 2000],
                       embeddings=doc_vectors[start : start + 2000])
    fake = PrecomputedEmbedder({q: v.tolist() for q, v in zip(query_texts, query_vectors)})
    return ChromaHybridSearch(collection, embedder=fake), queries, qrels, ids, texts


def _ndcg(search_fn, queries, qrels):
    return ndcg_at_10({qid: search_fn(text) for qid, text in queries.items()}, qrels)


def test_default_hybrid_reaches_072_and_beats_each_side(scifact_search):
    search, queries, qrels, ids, texts = scifact_search
    hybrid = _ndcg(lambda q: [h.id for h in search.query(q, 10)], queries, qrels)
    dense = _ndcg(lambda q: [h.id for h in search.query(q, 10, weights={"dense": 1, "sparse": 0},
                                                        fusion="relative_score")], queries, qrels)
    index = BM25Index()
    index.upsert(ids, texts)
    sparse = _ndcg(lambda q: [i for i, _ in index.search(q, 10)], queries, qrels)
    assert sparse == pytest.approx(0.689, abs=0.01)  # stemmed BM25, as measured with bm25s
    assert dense == pytest.approx(0.645, abs=0.01)
    assert hybrid >= 0.72
    assert hybrid > max(dense, sparse) + 0.02


@pytest.mark.parametrize(("mode", "floor"), [("rrf", 0.70), ("relative_score", 0.72), ("dist_based_score", 0.72)])
def test_every_fusion_mode(scifact_search, mode, floor):
    search, queries, qrels, _, _ = scifact_search
    assert _ndcg(lambda q: [h.id for h in search.query(q, 10, fusion=mode)], queries, qrels) >= floor
