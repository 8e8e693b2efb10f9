"""LangChain: hybrid retrieval over Chroma, our reranker as a compressor, and an LCEL chain.

    python examples/langchain_chain.py ["your question"] [--reranker PATH] [--max-chunks N]

langchain_chroma.Chroma  ->  ChromaHybridRetriever.from_vectorstore (dense + BM25 from the same
collection)  ->  ContextualCompressionRetriever(base_compressor=CrossEncoderReranker)  ->  an LCEL
chain ``{context, question} | prompt | llm | parser``. Offline, the "llm" is a small extractive
stand-in (it answers with the best reranked passage); put any chat model in its place.
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
from _offline import choose_reranker, minilm_path  # noqa: E402


def build_chain(max_chunks: int, reranker: str | None, top_n: int = 3, topics: tuple[str, ...] = LANGUAGE_TOPICS):
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from langchain_chroma import Chroma
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_core.documents import Document
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough

    import langchain_rerank_ext as lc
    from rerank_ext_core.embedding import SentenceTransformerEmbedder

    embeddings = SentenceTransformerEmbedder(minilm_path())  # any LangChain Embeddings works here
    client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
    store = Chroma(collection_name="python_docs", embedding_function=embeddings, client=client,
                   collection_metadata={"hnsw:space": "cosine"})
    chunks = python_topic_chunks(topics)[:max_chunks]
    store.add_documents([Document(page_content=c.text, metadata={"source": c.source}) for c in chunks],
                        ids=[c.id for c in chunks])

    kind, model, why = choose_reranker(reranker)
    print(f"Reranker: {why}")
    compressor_class = lc.CrossEncoderReranker if kind == "cross-encoder" else lc.ColBERTReranker
    hybrid = lc.ChromaHybridRetriever.from_vectorstore(store, k=20)
    retriever = ContextualCompressionRetriever(
        base_compressor=compressor_class(model=model, top_n=top_n, device="cpu"), base_retriever=hybrid
    )

    prompt = ChatPromptTemplate.from_messages([
        ("system", "Answer from the context only.\n\nContext:\n{context}"),
        ("human", "{question}"),
    ])

    def format_docs(docs):
        return "\n\n".join(f"[{d.metadata['relevance_score']:.2f}] {d.page_content}" for d in docs)

    def extractive_llm(prompt_value):
        """Offline stand-in for a chat model: the first context passage is the answer."""
        system = prompt_value.to_messages()[0].content
        context = system.split("Context:\n", 1)[1]
        return context.split("\n\n", 1)[0]

    chain = (
        {"context": retriever | RunnableLambda(format_docs), "question": RunnablePassthrough()}
        | prompt
        | RunnableLambda(extractive_llm)
        | StrOutputParser()
    )
    return chain, retriever


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="When are default argument values evaluated?")
    parser.add_argument("--reranker", help="a local cross-encoder folder or hub id")
    parser.add_argument("--max-chunks", type=int, default=400, help="at most this many paragraphs of Python's docs on statements and scopes")
    parser.add_argument("--topics", default=",".join(LANGUAGE_TOPICS),
                        help="comma-separated pydoc topics to index (default: statements and scopes)")
    args = parser.parse_args(argv)
    topics = tuple(t.strip() for t in args.topics.split(",") if t.strip())
    start = time.perf_counter()
    chain, retriever = build_chain(args.max_chunks, args.reranker, topics=topics)
    print(f"Store and chain ready in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    documents = retriever.invoke(args.question)
    print(f"\nQ: {args.question}")
    print(f"Reranked context ({1000 * (time.perf_counter() - start):.0f} ms):")
    for rank, doc in enumerate(documents, 1):
        text = " ".join(doc.page_content.split())[:100]
        print(f"  {rank}. relevance {doc.metadata['relevance_score']:.3f} | dense "
              f"{doc.metadata.get('dense_score') or 0:.2f}, sparse {doc.metadata.get('sparse_score') or 0:.2f} | {text}")
    print(f"Answer (offline extractive stand-in): {chain.invoke(args.question)[:300]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
