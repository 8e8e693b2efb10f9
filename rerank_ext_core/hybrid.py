"""Hybrid dense + BM25 search over a Chroma collection: plan, both sides at once, fuse, read back.

Dense: Chroma's own kNN query. Sparse: a :class:`~rerank_ext_core.mirror.BM25Mirror` of the
collection (it follows the collection; see that module). The two ranked lists are fused by
document id (:mod:`rerank_ext_core.fusion`), and the best are read back from Chroma by id, so a
query never returns a document that no longer exists.

A query's steps are written once, as a generator that yields the I/O it needs
(:class:`_BothSides`, then :class:`_ReadBack` requests); :meth:`ChromaHybridSearch.query` and
:meth:`ChromaHybridSearch.aquery` are thin drivers that differ only in how they wait.

Weak sides: when one side is much weaker than the other (an English-only encoder on Chinese text,
say), equal-weight fusion drags the strong side down. Every result carries ``dense_score``,
``sparse_score`` and both ranks, so the weak side is visible; pass ``weights={"dense": 0.2,
"sparse": 0.8}`` (or ``0`` to turn a side off) to the constructor or per query.

Size: this module is over 350 lines and ChromaHybridSearch over 250 because the class is the
public face of hybrid search: it documents every option, forwards the writes to the mirror and
has a sync and an async driver. Its own logic is the query's steps (``_steps``, ``_perform``,
``_hits``); following the collection is in :mod:`~rerank_ext_core.mirror`, the dense side in
:mod:`~rerank_ext_core.dense`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Generator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from rerank_ext_core import chroma
from rerank_ext_core._validation import check_number, check_positive_int, check_text, check_weights
from rerank_ext_core.bm25 import BM25Index, content_hash
from rerank_ext_core.dense import DenseSide
from rerank_ext_core.fusion import FusedResult, check_fusion_mode, check_rrf_k, fuse_checked
from rerank_ext_core.mirror import BM25Mirror
from rerank_ext_core.tokenization import Tokenizer

__all__ = ["DEFAULT_FUSION", "SIDES", "ChromaHybridSearch", "HybridHit", "QueryOptions"]

logger = logging.getLogger(__name__)

SIDES: tuple[str, str] = ("dense", "sparse")
DEFAULT_FUSION = "dist_based_score"


@dataclass(frozen=True)
class HybridHit:
    """One hybrid result. ``metadata`` is a fresh copy of the record's Chroma metadata."""

    id: str
    document: str
    metadata: dict[str, Any]
    score: float
    fusion: str
    dense_score: float | None = None
    sparse_score: float | None = None
    dense_rank: int | None = None
    sparse_rank: int | None = None

    def score_metadata(self) -> dict[str, Any]:
        """The scores as flat metadata entries (what the adapters add to their outputs)."""
        return {
            "hybrid_score": self.score,
            "fusion_mode": self.fusion,
            "dense_score": self.dense_score,
            "sparse_score": self.sparse_score,
            "dense_rank": self.dense_rank,
            "sparse_rank": self.sparse_rank,
        }


@dataclass(frozen=True)
class QueryOptions:
    """Checked, normalised fusion options (from :meth:`ChromaHybridSearch.query_options`)."""

    fusion: str
    weights: Mapping[str, float]
    rrf_k: float
    candidates: int


def _checked_options(fusion: Any, weights: Any, rrf_k: Any, candidates: Any) -> QueryOptions:
    return QueryOptions(
        fusion=check_fusion_mode(fusion, name="fusion"),
        weights=check_weights(weights, SIDES),
        rrf_k=check_rrf_k(rrf_k),
        candidates=check_positive_int("candidates", candidates),
    )


@dataclass(frozen=True)
class _Plan:
    query: str
    k: int
    where: dict[str, Any] | None
    where_document: dict[str, Any] | None
    options: QueryOptions

    @property
    def candidates(self) -> int:
        return max(self.options.candidates, self.k)


@dataclass(frozen=True)
class _BothSides:
    """Run the dense and the sparse side of ``plan``; answer ``(dense, sparse)`` pair lists."""

    plan: _Plan


@dataclass(frozen=True)
class _ReadBack:
    """Read these ids back from Chroma; answer ``{id: {"document", "metadata"}}``."""

    ids: list[str]


_Request = Union[_BothSides, _ReadBack]
_Steps = Generator[_Request, Any, "list[HybridHit]"]


class ChromaHybridSearch:
    """Dense + BM25 search over one Chroma collection, kept in step with it.

    Args:
        collection: a chromadb ``Collection`` (EphemeralClient, PersistentClient or HttpClient).
        embedder: embeds queries (and documents added through :meth:`add`): any object with
            ``embed_query(text)`` and ``embed_documents(texts)`` (optionally ``aembed_query``), e.g.
            :class:`~rerank_ext_core.embedding.SentenceTransformerEmbedder` or LangChain
            ``Embeddings``. ``None`` lets Chroma embed with the collection's embedding function.
        async_collection: the same collection opened through chromadb's ``AsyncHttpClient``; when
            given, :meth:`aquery` runs the dense side truly async on it.
        tokenizer: BM25 tokenizer (default: English + Chinese stopwords, English stemming, CJK unigrams + bigrams).
        fusion: ``"dist_based_score"`` (default), ``"relative_score"`` or ``"rrf"``.
        weights: per-side weights, e.g. ``{"dense": 0.5, "sparse": 0.5}`` (default equal).
        rrf_k: the RRF constant (default 60).
        candidates: how many results each side contributes to the fusion (default 100).
        index_dir: folder for the saved BM25 index. ``"auto"`` (default) saves beside a
            PersistentClient's data and nowhere for other clients; ``None`` never saves.
        check_interval: seconds between count checks (default 1; 0: every query). Chroma's
            ``count()`` grows with the collection (about 6 ms at 100k documents), so it is not run
            on every query by default; deleted documents are dropped at read-back regardless.
        id_check_interval: seconds between id checks when the count is unchanged (0: every query).
        background_refresh: run those checks in a background thread (default), so no query waits
            for a scan of the collection's ids or a BM25 rebuild; documents added by other writers
            then reach the BM25 side within about 5 seconds, and deleted ones are never returned
            (they are dropped at read-back). The refresher's periodic id scan is paced and runs
            less often than ``id_check_interval`` when it is expensive (at most 2% of the time,
            ``search.mirror.scan_budget``). ``False``, or an interval of 0, checks on the query path.
        colbert_vectors: a :class:`~rerank_ext_core.colbert_store.ColBERTVectorStore` to keep in step
            with the collection (encoded at write time, or when another writer's documents are
            noticed; dropped on delete); pass the same store to ``ColBERTReranker(vector_store=...)``
            so that reranking encodes only the query. It catches up with the collection here.
        autosave: rewrite the saved index after every change (atomic, O(corpus) per save); with
            ``False`` call :meth:`save` yourself, e.g. after a batch of writes.
        page_size: records per ``collection.get`` page.
        bm25_params: passed to :class:`~rerank_ext_core.bm25.BM25Index` (``k1``, ``b``, ``method``).
        timeout: seconds a request to a Chroma server may take before it fails with
            :class:`~rerank_ext_core.chroma.ChromaUnavailableError` (set on the HttpClient, so it
            applies to all its collections; chromadb's own default is to wait forever). ``None``
            leaves the client as it is. Local clients have no requests to time out.
    """

    def __init__(
        self,
        collection: Any,
        *,
        embedder: Any = None,
        async_collection: Any = None,
        tokenizer: Tokenizer | None = None,
        fusion: str = DEFAULT_FUSION,
        weights: Mapping[str, float] | None = None,
        rrf_k: float = 60,
        candidates: int = 100,
        index_dir: str | os.PathLike[str] | None = "auto",
        check_interval: float = 1.0,
        id_check_interval: float = 10.0,
        autosave: bool = True,
        page_size: int = chroma.DEFAULT_PAGE_SIZE,
        bm25_params: Mapping[str, Any] | None = None,
        timeout: float | None = 60.0,
        background_refresh: bool = True,
        colbert_vectors: Any = None,
    ) -> None:
        if collection is None or not callable(getattr(collection, "count", None)):
            msg = f"collection must be a chromadb Collection, got {type(collection).__name__}."
            raise TypeError(msg)
        if asyncio.iscoroutinefunction(getattr(collection, "count", None)):
            msg = (
                "collection is a chromadb AsyncCollection. Pass a Collection from chromadb.HttpClient "
                "as collection and the AsyncCollection as async_collection=."
            )
            raise TypeError(msg)
        if embedder is not None and not callable(getattr(embedder, "embed_query", None)):
            msg = f"embedder {type(embedder).__name__} has no embed_query(text) method."
            raise TypeError(msg)
        self.collection = collection
        self.embedder = embedder
        self.async_collection = async_collection
        self.defaults = _checked_options(fusion, weights, rrf_k, candidates)
        self.page_size = check_positive_int("page_size", page_size)
        if timeout is not None:
            chroma.apply_request_timeout(collection, check_number("timeout", timeout, low=0.001, example="timeout=60.0 (seconds)"))
        self.mirror = BM25Mirror(
            collection,
            embed_documents=getattr(embedder, "embed_documents", None),
            tokenizer=tokenizer,
            bm25_params=bm25_params,
            index_dir=index_dir,
            check_interval=check_interval,
            id_check_interval=id_check_interval,
            autosave=autosave,
            page_size=self.page_size,
            background_refresh=background_refresh,
        )
        self.colbert_vectors = colbert_vectors
        if colbert_vectors is not None:
            self.mirror.add_follower(colbert_vectors)
        self._dense_side = DenseSide(collection, embedder, async_collection)
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return (
            f"ChromaHybridSearch(collection={self.collection.name!r}, fusion={self.fusion!r}, "
            f"weights={dict(self.weights)}, candidates={self.defaults.candidates})"
        )

    # The instance's defaults, as attributes of their own.
    fusion = property(lambda self: self.defaults.fusion)
    weights = property(lambda self: self.defaults.weights)
    rrf_k = property(lambda self: self.defaults.rrf_k)
    candidates = property(lambda self: self.defaults.candidates)
    # The BM25 side (see BM25Mirror).
    index: BM25Index = property(lambda self: self.mirror.index)  # type: ignore[assignment]
    index_path: Path | None = property(lambda self: self.mirror.index_path)  # type: ignore[assignment]

    # ------------------------------------------------------------------ writes and sync: the mirror
    def refresh(self) -> None:
        """Bring the BM25 index fully up to date now (see :meth:`BM25Mirror.refresh`)."""
        self.mirror.refresh()

    def save(self) -> Path | None:
        """Save the BM25 index now (atomically). Returns the file, or None when no place is set."""
        return self.mirror.save()

    def add(self, ids, documents, metadatas=None, embeddings=None) -> None:
        """Add documents to Chroma and to the BM25 index (embedded with ``embedder`` unless
        ``embeddings`` are given). Ids that already exist keep their stored record."""
        self.mirror.write("add", ids, documents, metadatas, embeddings)

    def upsert(self, ids, documents, metadatas=None, embeddings=None) -> None:
        self.mirror.write("upsert", ids, documents, metadatas, embeddings)

    def update(self, ids, documents=None, metadatas=None, embeddings=None) -> None:
        """Update records; changed texts are re-embedded (with ``embedder``) and re-tokenized."""
        self.mirror.write("update", ids, documents, metadatas, embeddings)

    def delete(self, ids: Sequence[str] | None = None, *, where: dict[str, Any] | None = None) -> None:
        """Delete records by id and/or by a ``where`` filter, from Chroma and the BM25 index."""
        self.mirror.delete(ids, where=where)

    # ------------------------------------------------------------------------------ planning
    def query_options(
        self,
        *,
        fusion: str | None = None,
        weights: Mapping[str, float] | None = None,
        rrf_k: float | None = None,
        candidates: int | None = None,
    ) -> QueryOptions:
        """Check and normalise per-query overrides of the instance's fusion settings, once (an
        adapter calls this in its constructor and passes the result to every query)."""
        return _checked_options(
            self.fusion if fusion is None else fusion,
            self.weights if weights is None else weights,
            self.rrf_k if rrf_k is None else rrf_k,
            self.candidates if candidates is None else candidates,
        )

    def _plan(
        self,
        query: Any,
        k: Any,
        where: dict[str, Any] | None,
        where_document: dict[str, Any] | None,
        options: QueryOptions,
    ) -> _Plan | None:
        query = check_text("query", query)
        k = check_positive_int("k", k)
        where = chroma.check_filter("where", where)
        where_document = chroma.check_filter("where_document", where_document)
        if not query.strip():
            logger.info("Empty query: returning no results.")
            return None
        return _Plan(query, k, where, where_document, options)

    # ------------------------------------------------------------------------------ querying
    def query(
        self, query: str, k: int = 10, *, where: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None, options: QueryOptions | None = None, **overrides: Any,
    ) -> list[HybridHit]:
        """The ``k`` best documents for ``query``, best first (fewer when fewer match).

        ``where`` / ``where_document`` are Chroma filters applied to both sides. ``overrides``
        (``fusion``, ``weights``, ``rrf_k``, ``candidates``: see :meth:`query_options`) replace the
        instance's settings for this query; or pass ``options`` made by :meth:`query_options`.
        An empty or blank query returns ``[]``; ``k <= 0`` raises ``ValueError``, a query that is
        not a string ``TypeError``.
        """
        steps = self._steps(query, k, where, where_document, options, overrides)
        answer = None
        try:
            while True:
                answer = self._perform(steps.send(answer))
        except StopIteration as done:
            return done.value

    async def aquery(
        self, query: str, k: int = 10, *, where: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None, options: QueryOptions | None = None, **overrides: Any,
    ) -> list[HybridHit]:
        """:meth:`query` with the dense and sparse sides running concurrently; the dense side (and
        the read-back) is truly async when ``async_collection`` is set, the sparse side runs in a
        worker thread."""
        steps = self._steps(query, k, where, where_document, options, overrides)
        answer = None
        try:
            while True:
                answer = await self._aperform(steps.send(answer))
        except StopIteration as done:
            return done.value

    def _steps(
        self, query: Any, k: Any, where: Any, where_document: Any, options: QueryOptions | None,
        overrides: dict[str, Any],
    ) -> _Steps:
        """One query, written once: plan, both sides, fuse, read the best back until ``k`` exist."""
        if options is None:
            options = self.query_options(**overrides)
        elif overrides:
            msg = f"query got options= and {sorted(overrides)} together; put the overrides in query_options()."
            raise TypeError(msg)
        plan = self._plan(query, k, where, where_document, options)
        if plan is None:
            return []
        dense, sparse = yield _BothSides(plan)
        fused = fuse_checked(
            {"dense": dense, "sparse": sparse},
            mode=options.fusion, weights=options.weights, rrf_k=options.rrf_k,
        )
        hits: list[HybridHit] = []
        start = 0
        # Ids that no longer exist are dropped and the next ones read, so a deleted document is
        # never returned.
        while len(hits) < plan.k and start < len(fused):
            window = fused[start : start + plan.k - len(hits)]
            records = yield _ReadBack([result.id for result in window])
            hits.extend(self._hits(plan, window, records))
            start += len(window)
        return hits

    def _perform(self, request: _Request) -> Any:
        if isinstance(request, _BothSides):
            # The sparse side (with its collection check) runs in a worker thread while this
            # thread runs the dense query: Chroma's calls release the GIL.
            sparse_future = self._pool().submit(self._sparse, request.plan)
            try:
                dense = self._dense_side.search(request.plan.query, request.plan.candidates, request.plan.where, request.plan.where_document)
            finally:
                sparse = sparse_future.result()
            return dense, sparse
        return chroma.get_by_ids(self.collection, request.ids, include=["documents", "metadatas"], page_size=self.page_size)

    async def _aperform(self, request: _Request) -> Any:
        if isinstance(request, _BothSides):
            plan = request.plan
            return await asyncio.gather(
                self._dense_side.asearch(plan.query, plan.candidates, plan.where, plan.where_document),
                asyncio.to_thread(self._sparse, plan),
            )
        if self.async_collection is None:
            return await asyncio.to_thread(self._perform, request)
        return await chroma.aget_by_ids(
            self.async_collection, request.ids, include=["documents", "metadatas"], page_size=self.page_size
        )

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rerank-ext-sparse")
        return self._executor

    def close(self) -> None:
        """Stop the worker threads and the background refresher (they also stop when the object
        is garbage-collected)."""
        self.mirror.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def _sparse(self, plan: _Plan) -> list[tuple[str, float]]:
        return self.mirror.search(plan.query, plan.candidates, plan.where, plan.where_document)

    def _hits(self, plan: _Plan, fused: list[FusedResult], records: Mapping[str, dict[str, Any]]) -> list[HybridHit]:
        hits: list[HybridHit] = []
        missing: list[str] = []
        changed: dict[str, str] = {}
        for result in fused:
            record = records.get(result.id)
            if record is None:
                missing.append(result.id)
                continue
            document = record.get("document")
            if isinstance(document, str) and result.id in self.index:
                stored = self.index.hash_of(result.id)
                if stored is not None and stored != content_hash(document):
                    changed[result.id] = document
            hits.append(
                HybridHit(
                    id=result.id,
                    document=document if isinstance(document, str) else "",
                    metadata=dict(record.get("metadata") or {}),
                    score=result.score,
                    fusion=plan.options.fusion,
                    dense_score=result.side_scores.get("dense"),
                    sparse_score=result.side_scores.get("sparse"),
                    dense_rank=result.side_ranks.get("dense"),
                    sparse_rank=result.side_ranks.get("sparse"),
                )
            )
        self.mirror.repair(missing, changed)
        return hits

