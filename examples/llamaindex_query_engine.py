"""LlamaIndex: a VectorStoreIndex over Chroma, hybrid retrieval, reranking, one query engine.

    python examples/llamaindex_query_engine.py ["your question"] [--reranker PATH] [--max-chunks N]

VectorStoreIndex over ChromaVectorStore  ->  ChromaHybridRetriever.from_index (dense + BM25 built
from the same collection)  ->  CrossEncoderReranker as node postprocessor  ->  RetrieverQueryEngine.
The answer comes from the LLM in ``Settings.llm`` when you configure one; offline the example uses
LlamaIndex's MockLLM and prints the reranked sources, which is the part this library changes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _corpus import LANGUAGE_TOPICS, python_topic_chunks  # noqa: E402
from _offline import choose_reranker, llamaindex_embedding  # noqa: E402


def build_query_engine(max_chunks: int, reranker: str | None, top_n: int = 3, topics: tuple[str, ...] = LANGUAGE_TOPICS):
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.llms.mock import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.chroma import ChromaVectorStore

    import llamaindex_rerank_ext as li

    embed_model = llamaindex_embedding()
    client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
    collection = client.get_or_create_collection("python_docs", metadata={"hnsw:space": "cosine"})
    vector_store = ChromaVectorStore(chroma_collection=collection)
    nodes = [TextNode(id_=c.id, text=c.text, metadata={"source": c.source}) for c in python_topic_chunks(topics)[:max_chunks]]
    index = VectorStoreIndex(
        nodes, storage_context=StorageContext.from_defaults(vector_store=vector_store), embed_model=embed_model
    )

    kind, model, why = choose_reranker(reranker)
    print(f"Reranker: {why}")
    reranker_class = li.CrossEncoderReranker if kind == "cross-encoder" else li.ColBERTReranker
    retriever = li.ChromaHybridRetriever.from_index(index, similarity_top_k=20)
    postprocessor = reranker_class(model=model, top_n=top_n, device="cpu")
    llm = _configured_llm() or MockLLM(max_tokens=32)
    return RetrieverQueryEngine.from_args(retriever, llm=llm, node_postprocessors=[postprocessor])


def _configured_llm():
    """The LLM you set in ``llama_index.core.Settings.llm`` (none by default, offline)."""
    from llama_index.core import Settings

    return Settings._llm  # None unless configured; reading Settings.llm would try OpenAI


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="What does the nonlocal statement do?")
    parser.add_argument("--reranker", help="a local cross-encoder folder or hub id")
    parser.add_argument("--max-chunks", type=int, default=400, help="at most this many paragraphs of Python's docs on statements and scopes")
    parser.add_argument("--topics", default=",".join(LANGUAGE_TOPICS),
                        help="comma-separated pydoc topics to index (default: statements and scopes)")
    args = parser.parse_args(argv)
    topics = tuple(t.strip() for t in args.topics.split(",") if t.strip())
    start = time.perf_counter()
    engine = build_query_engine(args.max_chunks, args.reranker, topics=topics)
    print(f"Index and engine ready in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    response = engine.query(args.question)
    print(f"\nQ: {args.question}  ({1000 * (time.perf_counter() - start):.0f} ms)")
    label = "Answer" if _configured_llm() else "Answer (MockLLM: no LLM configured, so filler text)"
    print(f"{label}: {str(response).strip()[:120]}")
    print("Sources after reranking:")
    for rank, source in enumerate(response.source_nodes, 1):
        meta = source.node.metadata
        text = " ".join(source.node.get_content().split())[:100]
        print(f"  {rank}. rerank {source.score:.3f} | hybrid dense {meta.get('dense_score') or 0:.2f}, "
              f"sparse {meta.get('sparse_score') or 0:.2f} | {meta.get('source')}: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
