"""Hybrid retrieval over a large Chroma collection: ours against the anchors, in one run.

    HF_HUB_OFFLINE=1 python benchmarks/bench_hybrid.py [--docs 100000] [--queries 100]

The collection holds SciFact sentence windows (1-3 consecutive sentences of an abstract, titles
prepended) up to ``--docs`` documents. Dense vectors are 384-d hashed bag-of-words vectors (cheap
to compute for 100k texts; the dense-embedding step is shared by every retriever and taken out
of the timings: queries arrive with precomputed vectors). Compared, all with top-10 per side:

* ours: ``ChromaHybridSearch`` (defaults: 100 candidates per side, distribution-based fusion);
* LangChain ``EnsembleRetriever([BM25Retriever, Chroma retriever])``;
* LlamaIndex ``QueryFusionRetriever([BM25Retriever, VectorStoreIndex retriever], reciprocal_rerank)``.

Printed: sparse-index build time (ours reads the documents from Chroma in pages; the anchors get
them in memory), peak Python memory of that build (tracemalloc), per-query latency p50/p95, and
the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np

from _scifact import DEFAULT_SCIFACT, PrecomputedEmbedder, load_scifact

DIM = 384
_WORD = re.compile(r"\w+")


def hashed_vector(text: str) -> list[float]:
    vector = np.zeros(DIM, dtype=np.float32)
    for word in _WORD.findall(text.lower()):
        code = zlib.crc32(word.encode())
        vector[code % DIM] += 1.0 if (code >> 16) & 1 else -1.0
    vector[0] += 1e-3
    return (vector / np.linalg.norm(vector)).tolist()


def sentence_windows(corpus: dict[str, str], limit: int) -> tuple[list[str], list[str], list[dict]]:
    ids, texts, metadatas = [], [], []
    for width in (1, 2, 3):
        for doc_id, text in corpus.items():
            sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s) > 20]
            for start in range(0, max(len(sentences) - width + 1, 0)):
                ids.append(f"{doc_id}-{width}-{start}")
                texts.append(" ".join(sentences[start : start + width]))
                metadatas.append({"doc": doc_id, "width": width})
                if len(ids) >= limit:
                    return ids, texts, metadatas
    return ids, texts, metadatas


def measure_build(label: str, build):
    tracemalloc.start()
    start = time.perf_counter()
    result = build()
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, elapsed, peak / 2**20


def latencies(run, queries: list[str]) -> list[float]:
    run(queries[0])  # warm-up
    times = []
    for query in queries:
        start = time.perf_counter()
        run(query)
        times.append(time.perf_counter() - start)
    return times


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--data", default=str(DEFAULT_SCIFACT))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import chromadb

    corpus, queries_by_id, _ = load_scifact(Path(args.data))
    ids, texts, metadatas = sentence_windows(corpus, args.docs)
    queries = list(queries_by_id.values())[: args.queries]
    print(f"collection: {len(ids)} documents (SciFact sentence windows); {len(queries)} queries")

    start = time.perf_counter()
    vectors = [hashed_vector(t) for t in texts]
    query_vectors = {q: hashed_vector(q) for q in queries}
    client = chromadb.EphemeralClient()
    collection = client.create_collection("bench_hybrid", embedding_function=None, metadata={"hnsw:space": "cosine"})
    batch = 5000
    for s in range(0, len(ids), batch):
        collection.add(ids=ids[s : s + batch], documents=texts[s : s + batch],
                       metadatas=metadatas[s : s + batch], embeddings=vectors[s : s + batch])
    print(f"Chroma collection built in {time.perf_counter() - start:.1f}s")
    k = 10
    rows = []

    # ---- ours
    from rerank_ext_core.hybrid import ChromaHybridSearch

    fake = PrecomputedEmbedder(query_vectors)

    def build_ours():
        search = ChromaHybridSearch(collection, embedder=fake, index_dir=None)
        search.refresh()
        search.index.search("warm", 1)  # builds the bm25s matrix
        return search

    ours, build_s, peak_mb = measure_build("ours", build_ours)
    ours_lat = latencies(lambda q: ours.query(q, k), queries)
    rows.append(("rerank-ext ChromaHybridSearch", build_s, peak_mb, ours_lat))
    ours_async = []
    for q in queries:
        s = time.perf_counter()
        asyncio.run(ours.aquery(q, k))
        ours_async.append(time.perf_counter() - s)
    rows.append(("rerank-ext ChromaHybridSearch.aquery", float("nan"), float("nan"), ours_async))

    # ---- LangChain EnsembleRetriever
    from langchain_chroma import Chroma
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_community.retrievers import BM25Retriever as LCBM25Retriever
    from langchain_core.embeddings import Embeddings

    class LCPrecomputed(Embeddings):
        def embed_documents(self, texts_):
            return [query_vectors[t] for t in texts_]

        def embed_query(self, text):
            return query_vectors[text]

    store = Chroma(client=client, collection_name="bench_hybrid", embedding_function=LCPrecomputed())
    lc_bm25, build_s, peak_mb = measure_build(
        "lc", lambda: LCBM25Retriever.from_texts(texts, metadatas=metadatas, ids=ids, k=k)
    )
    ensemble = EnsembleRetriever(retrievers=[lc_bm25, store.as_retriever(search_kwargs={"k": k})], weights=[0.5, 0.5])
    lc_lat = latencies(lambda q: ensemble.invoke(q), queries)
    rows.append(("LangChain EnsembleRetriever", build_s, peak_mb, lc_lat))

    # ---- LlamaIndex QueryFusionRetriever
    from llama_index.core import VectorStoreIndex
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.retrievers import QueryFusionRetriever
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.bm25 import BM25Retriever as LIBM25Retriever
    from llama_index.vector_stores.chroma import ChromaVectorStore

    class LIPrecomputed(BaseEmbedding):
        def _get_query_embedding(self, query):
            return query_vectors[query]

        async def _aget_query_embedding(self, query):
            return query_vectors[query]

        def _get_text_embedding(self, text):
            return hashed_vector(text)

    nodes = [TextNode(id_=i, text=t, metadata=m) for i, t, m in zip(ids, texts, metadatas)]
    li_bm25, build_s, peak_mb = measure_build(
        "li", lambda: LIBM25Retriever.from_defaults(nodes=nodes, similarity_top_k=k, language="english")
    )
    index = VectorStoreIndex.from_vector_store(ChromaVectorStore(chroma_collection=collection), embed_model=LIPrecomputed())
    fusion = QueryFusionRetriever(
        [li_bm25, index.as_retriever(similarity_top_k=k)], llm=MockLLM(), num_queries=1,
        similarity_top_k=k, mode="reciprocal_rerank", use_async=False,
    )
    li_lat = latencies(lambda q: fusion.retrieve(q), queries)
    rows.append(("LlamaIndex QueryFusionRetriever", build_s, peak_mb, li_lat))

    print()
    print(f"{'retriever':<40}{'sparse build s':>15}{'peak MiB':>10}{'p50 ms':>10}{'p95 ms':>10}")
    for label, build_s, peak_mb, lat in rows:
        print(f"{label:<40}{build_s:>15.2f}{peak_mb:>10.0f}{pct(lat, 50):>10.2f}{pct(lat, 95):>10.2f}")
    ours_p50, ours_p95 = pct(ours_lat, 50), pct(ours_lat, 95)
    print()
    print(f"EnsembleRetriever / ours   latency p50 {pct(lc_lat, 50) / ours_p50:6.1f}x   p95 {pct(lc_lat, 95) / ours_p95:6.1f}x")
    print(f"QueryFusionRetriever / ours latency p50 {pct(li_lat, 50) / ours_p50:6.1f}x   p95 {pct(li_lat, 95) / ours_p95:6.1f}x")


if __name__ == "__main__":
    main()
