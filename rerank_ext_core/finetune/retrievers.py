"""The retrievers negatives are mined with: over a corpus in memory (a BEIR folder) the same BM25,
exact dense and fusion stages as ``rerank-ext eval``; over a Chroma collection our
:class:`~rerank_ext_core.hybrid.ChromaHybridSearch`."""

from __future__ import annotations

import logging
from typing import Any

from rerank_ext_core.finetune.data import Corpus
from rerank_ext_core.finetune.mining import Retrieve
from rerank_ext_core.fusion import fuse

__all__ = ["chroma_retriever", "corpus_retriever"]

logger = logging.getLogger(__name__)

_SIDE_WEIGHTS = {"hybrid": None, "dense": {"dense": 1.0, "sparse": 0.0}, "bm25": {"dense": 0.0, "sparse": 1.0}}


def corpus_retriever(
    corpus: Corpus, source: str, *, embedding_model: str | None, depth: int, cache_dir: str | None = None,
    device: str = "cpu",
) -> Retrieve | None:
    """``retrieve(query, k) -> [(id, score)]`` over ``corpus`` for ``source`` (None for ``"random"``). Corpus
    vectors are cached like ``rerank-ext eval``'s, so a second run does not encode again."""
    if source == "random":
        return None
    from rerank_ext_core.evaluation.first_stage import CorpusEncoder, bm25_search, exact_dense_search

    sparse = bm25_search(corpus.ids, corpus.texts, k=depth) if source in ("hybrid", "bm25") else None
    dense = None
    if source in ("hybrid", "dense"):
        from rerank_ext_core.evaluation.corpus_cache import CorpusEmbeddingCache, default_cache_dir, model_fingerprint
        from rerank_ext_core.evaluation.runner import default_embedding_model

        model = embedding_model or default_embedding_model()
        encoder = CorpusEncoder(model, device=device)
        cache = CorpusEmbeddingCache.for_corpus(
            cache_dir or default_cache_dir(),
            model_fingerprint=model_fingerprint(encoder.embedder.model_path),
            corpus_sha256=corpus.fingerprint,
            encoding_settings={"normalize": True, "text": "title text"},  # as rerank-ext eval: one cache
        )
        vectors = cache.load(corpus.ids)
        if vectors is None:
            logger.info("Encoding %d documents with %s for mining", len(corpus.ids), model)
            vectors = encoder.encode(corpus.texts)
            cache.save(corpus.ids, vectors, description={"model": model})
        dense = exact_dense_search(vectors, corpus.ids, encoder.encode_query, k=depth)

    def retrieve(query: str, k: int) -> list[tuple[str, float]]:
        if source == "bm25":
            return [(doc_id, float(score)) for doc_id, score in sparse(query)[:k]]
        if source == "dense":
            return [(doc_id, float(score)) for doc_id, score in dense(query)[:k]]
        return [(item.id, item.score) for item in fuse({"dense": dense(query), "sparse": sparse(query)})[:k]]

    return retrieve


def chroma_retriever(search: Any, source: str) -> Retrieve | None:
    """``retrieve(query, k)`` through a :class:`ChromaHybridSearch` (one side off for ``"dense"``
    or ``"bm25"``); None for ``"random"``."""
    if source == "random":
        return None
    options = search.query_options(weights=_SIDE_WEIGHTS[source])

    def retrieve(query: str, k: int) -> list[tuple[str, float]]:
        return [(hit.id, hit.score) for hit in search.query(query, k, options=options)]

    return retrieve
