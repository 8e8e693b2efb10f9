"""Hybrid dense + BM25 search over a Chroma collection that follows the collection.

Dense: Chroma's own kNN query. Sparse: a :class:`~rerank_ext_core.bm25.BM25Index` built from the
collection's documents (read in pages). The two ranked lists are fused by document id
(:mod:`rerank_ext_core.fusion`).

Following the collection:
    * writes made through :meth:`ChromaHybridSearch.add`, ``upsert``, ``update`` and ``delete`` reach
      Chroma and the BM25 index at once;
    * writes made by anyone else (LlamaIndex ``ChromaVectorStore``, ``langchain-chroma``, the raw
      client) are noticed at query time: every query compares ``collection.count()`` with the ids it
      knows, and at most every ``id_check_interval`` seconds (and always after a count change) it
      reads the collection's ids (ids only, in pages) and indexes only the added documents and drops
      the deleted ones. A document whose text changed in place is re-tokenized when it shows up in a
      result (its text is compared with the stored digest) or on :meth:`refresh`;
    * results are read back from Chroma by id, so a query never returns a document that no longer
      exists.

Weak sides: when one side is much weaker than the other (an English-only encoder on Chinese text,
say), equal-weight fusion drags the strong side down. Every result carries ``dense_score``,
``sparse_score`` and both ranks, so the weak side is visible; pass ``weights={"dense": 0.2,
"sparse": 0.8}`` (or ``0`` to turn a side off) to the constructor or per query.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rerank_ext_core import chroma
from rerank_ext_core._validation import check_positive_int
from rerank_ext_core.bm25 import BM25Index, content_hash
from rerank_ext_core.fusion import FusedResult, fuse, validate_fusion_mode, validate_weights
from rerank_ext_core.tokenization import Tokenizer

__all__ = ["DEFAULT_FUSION", "SIDES", "ChromaHybridSearch", "HybridHit"]

logger = logging.getLogger(__name__)

SIDES: tuple[str, str] = ("dense", "sparse")
DEFAULT_FUSION = "dist_based_score"
_INDEX_FOLDER = "rerank_ext_bm25"


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
class _Plan:
    query: str
    k: int
    candidates: int
    where: dict[str, Any] | None
    where_document: dict[str, Any] | None
    fusion: str
    weights: dict[str, float]
    rrf_k: float


@dataclass
class _SyncState:
    known_ids: set[str] = field(default_factory=set)
    skipped_ids: set[str] = field(default_factory=set)
    initialized: bool = False
    last_id_check: float = 0.0
    last_count_check: float = 0.0


def _indexing_progress(collection: Any) -> Any:
    """A progress bar over the collection's documents, shown only on a terminal."""
    from tqdm.auto import tqdm

    return tqdm(
        total=chroma.call(collection, "counting documents", collection.count),
        desc=f"BM25 index of {collection.name!r}",
        unit="doc",
        disable=not sys.stderr.isatty(),
        leave=False,
    )


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
        autosave: rewrite the saved index after every change (atomic, O(corpus) per save); with
            ``False`` call :meth:`save` yourself, e.g. after a batch of writes.
        page_size: records per ``collection.get`` page.
        bm25_params: passed to :class:`~rerank_ext_core.bm25.BM25Index` (``k1``, ``b``, ``method``).
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
        self.fusion = validate_fusion_mode(fusion)
        self.weights = validate_weights(weights, SIDES)
        self.rrf_k = rrf_k
        fuse({"dense": [], "sparse": []}, mode="rrf", rrf_k=rrf_k)  # validates rrf_k
        self.candidates = check_positive_int("candidates", candidates)
        self.page_size = check_positive_int("page_size", page_size)
        for name, value in (("check_interval", check_interval), ("id_check_interval", id_check_interval)):
            if not value >= 0:
                msg = f"{name}={value} must be a number of seconds >= 0."
                raise ValueError(msg)
        self.check_interval = float(check_interval)
        self.id_check_interval = float(id_check_interval)
        self.autosave = autosave
        self.index = BM25Index(tokenizer, **dict(bm25_params or {}))
        self._to_similarity = chroma.similarity_from_distance(chroma.collection_space(collection))
        self.index_path = self._resolve_index_path(index_dir)
        self._lock = threading.RLock()
        self._state = _SyncState()
        self._executor: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return (
            f"ChromaHybridSearch(collection={self.collection.name!r}, fusion={self.fusion!r}, "
            f"weights={self.weights}, candidates={self.candidates})"
        )

    def _resolve_index_path(self, index_dir: str | os.PathLike[str] | None) -> Path | None:
        if index_dir is None:
            return None
        if isinstance(index_dir, str) and index_dir == "auto":
            base = chroma.persist_directory(self.collection)
            if base is None:
                return None
            folder = base / _INDEX_FOLDER
        else:
            folder = Path(os.fspath(index_dir))
        return folder / f"{self.collection.id}.npz"

    # ------------------------------------------------------------------ following the collection
    def refresh(self) -> None:
        """Bring the BM25 index fully up to date now: re-reads every document (in pages) and
        re-tokenizes the ones whose text changed, drops deleted ones, adds new ones."""
        with self._lock:
            self._load_saved_locked()
            current: set[str] = set()
            skipped: set[str] = set()
            changed = False
            with _indexing_progress(self.collection) as bar:
                for page in chroma.iter_pages(self.collection, include=["documents"], page_size=self.page_size):
                    ids, documents = page["ids"], page["documents"]
                    current.update(ids)
                    before = {doc_id: self.index.hash_of(doc_id) for doc_id in ids}
                    skipped.update(self.index.upsert(ids, documents))
                    changed = changed or any(self.index.hash_of(i) != before[i] for i in ids)
                    bar.update(len(ids))
            removed = self._state.known_ids - current
            self.index.remove(removed)
            changed = changed or bool(removed) or skipped != self._state.skipped_ids
            now = time.monotonic()
            self._state = _SyncState(current, skipped, True, last_id_check=now, last_count_check=now)
            if changed:
                self._save_locked()

    def _load_saved_locked(self) -> None:
        if self._state.initialized or self.index_path is None:
            return
        extra = self.index.load(self.index_path)
        if extra is None or extra.get("collection_id") != str(self.collection.id):
            return
        skipped = set(extra.get("skipped_ids", []))
        self._state = _SyncState(set(self.index.ids()) | skipped, skipped, True, 0.0)
        logger.info("Loaded the BM25 index of %r from %s", self.collection.name, self.index_path)

    def _save_locked(self) -> None:
        if self.index_path is None or not self.autosave or not self._state.initialized:
            return
        extra = {"collection_id": str(self.collection.id), "skipped_ids": sorted(self._state.skipped_ids)}
        self.index.save(self.index_path, extra=extra)

    def save(self) -> Path | None:
        """Save the BM25 index now (atomically). Returns the file, or None when no place is set."""
        if self.index_path is None:
            return None
        self._sync()
        with self._lock:
            extra = {"collection_id": str(self.collection.id), "skipped_ids": sorted(self._state.skipped_ids)}
            self.index.save(self.index_path, extra=extra)
        return self.index_path

    def _sync(self) -> None:
        """The query-time check: the count when ``check_interval`` has passed, the ids when
        ``id_check_interval`` has passed or the count moved."""
        state = self._state
        if state.initialized:
            now = time.monotonic()
            if now - state.last_count_check < self.check_interval:
                return
            state.last_count_check = now
            count = chroma.call(self.collection, "counting documents", self.collection.count)
            due = now - state.last_id_check >= self.id_check_interval
            if count == len(state.known_ids) and not due:
                return
        with self._lock:
            if not self._state.initialized:
                self._load_saved_locked()
                if not self._state.initialized:
                    self.refresh()
                    return
            self._sync_ids_locked()

    def _sync_ids_locked(self) -> None:
        state = self._state
        current: set[str] = set()
        for page in chroma.iter_pages(self.collection, page_size=self.page_size):
            current.update(page["ids"])
        removed = state.known_ids - current
        added = sorted(current - state.known_ids)
        skipped = state.skipped_ids - removed
        if added:
            records = chroma.get_by_ids(
                self.collection, added, include=["documents"], page_size=self.page_size
            )
            found = [doc_id for doc_id in added if doc_id in records]
            skipped |= set(self.index.upsert(found, [records[i]["document"] for i in found]))
            current -= set(added) - set(found)
        self.index.remove(removed)
        now = time.monotonic()
        self._state = _SyncState(current, skipped, True, last_id_check=now, last_count_check=now)
        if added or removed:
            logger.info(
                "Collection %r changed outside this index: %d added, %d removed",
                self.collection.name, len(added), len(removed),
            )
            self._save_locked()

    # ------------------------------------------------------------------------- our own writes
    def _embed_documents(self, documents: Sequence[str]) -> list[list[float]] | None:
        if self.embedder is None:
            return None
        return [list(map(float, vector)) for vector in self.embedder.embed_documents(list(documents))]

    def _write(
        self,
        method: str,
        ids: Sequence[str],
        documents: Sequence[str] | None,
        metadatas: Sequence[Mapping[str, Any] | None] | None,
        embeddings: Sequence[Sequence[float]] | None,
    ) -> None:
        ids = list(ids)
        if not ids:
            return
        for name, values in (("documents", documents), ("metadatas", metadatas), ("embeddings", embeddings)):
            if values is not None and len(values) != len(ids):
                msg = f"{method} got {len(ids)} ids but {len(values)} {name}; pass one per id."
                raise ValueError(msg)
        if method == "add":
            # Chroma keeps the stored record when add() names an existing id: skip those ids here
            # so that BM25 keeps the stored text too (use upsert to replace).
            existing = chroma.get_by_ids(self.collection, ids, include=[], page_size=self.page_size)
            if existing:
                logger.info("add: %d ids already exist and were left as they are; use upsert to replace them", len(existing))
                keep = [position for position, doc_id in enumerate(ids) if doc_id not in existing]
                ids = [ids[p] for p in keep]
                documents = None if documents is None else [documents[p] for p in keep]
                metadatas = None if metadatas is None else [metadatas[p] for p in keep]
                embeddings = None if embeddings is None else [embeddings[p] for p in keep]
                if not ids:
                    return
        if embeddings is None and documents is not None:
            embeddings = self._embed_documents(documents)
        kwargs: dict[str, Any] = {"ids": ids}
        if documents is not None:
            kwargs["documents"] = list(documents)
        if metadatas is not None:
            kwargs["metadatas"] = [dict(m) if m else None for m in metadatas]
        if embeddings is not None:
            kwargs["embeddings"] = [list(map(float, e)) for e in embeddings]
        chroma.call(self.collection, f"{method} documents", getattr(self.collection, method), **kwargs)
        with self._lock:
            if documents is not None:
                skipped = set(self.index.upsert(ids, list(documents)))
                self._state.skipped_ids = (self._state.skipped_ids - set(ids)) | skipped
            self._state.known_ids.update(ids)
            self._save_locked()

    def add(self, ids, documents, metadatas=None, embeddings=None) -> None:
        """Add documents to Chroma and to the BM25 index (embedded with ``embedder`` unless
        ``embeddings`` are given)."""
        self._write("add", ids, documents, metadatas, embeddings)

    def upsert(self, ids, documents, metadatas=None, embeddings=None) -> None:
        self._write("upsert", ids, documents, metadatas, embeddings)

    def update(self, ids, documents=None, metadatas=None, embeddings=None) -> None:
        """Update records; changed texts are re-embedded (with ``embedder``) and re-tokenized."""
        self._write("update", ids, documents, metadatas, embeddings)

    def delete(self, ids: Sequence[str] | None = None, *, where: dict[str, Any] | None = None) -> None:
        """Delete records by id and/or by a ``where`` filter, from Chroma and the BM25 index."""
        if ids is None and where is None:
            msg = "delete needs ids=[...] or where={...}; with neither it would have nothing to select."
            raise ValueError(msg)
        targets: set[str] = set(ids or [])
        if where is not None:
            for page in chroma.iter_pages(self.collection, where=where, page_size=self.page_size):
                targets.update(page["ids"])
        if not targets:
            return
        ordered = sorted(targets)
        for start in range(0, len(ordered), self.page_size):
            batch = ordered[start : start + self.page_size]
            chroma.call(self.collection, "deleting documents", self.collection.delete, ids=batch)
        with self._lock:
            self.index.remove(ordered)
            self._state.known_ids.difference_update(ordered)
            self._state.skipped_ids.difference_update(ordered)
            self._save_locked()

    # ------------------------------------------------------------------------------- querying
    def _plan(
        self,
        query: Any,
        k: Any,
        where: dict[str, Any] | None,
        where_document: dict[str, Any] | None,
        fusion: str | None,
        weights: Mapping[str, float] | None,
        rrf_k: float | None,
        candidates: int | None,
    ) -> _Plan | None:
        if not isinstance(query, str):
            msg = f"query must be a string, got {type(query).__name__}."
            raise TypeError(msg)
        k = check_positive_int("k", k)
        mode = validate_fusion_mode(fusion) if fusion is not None else self.fusion
        side_weights = validate_weights(weights, SIDES) if weights is not None else self.weights
        fusion_k = self.rrf_k if rrf_k is None else rrf_k
        if rrf_k is not None:
            fuse({"dense": []}, mode="rrf", rrf_k=rrf_k)
        pool = check_positive_int("candidates", candidates) if candidates is not None else self.candidates
        if not query.strip():
            logger.info("Empty query: returning no results.")
            return None
        return _Plan(query, k, max(pool, k), where or None, where_document or None, mode, side_weights, fusion_k)

    def check_query_options(
        self,
        k: int = 10,
        *,
        fusion: str | None = None,
        weights: Mapping[str, float] | None = None,
        rrf_k: float | None = None,
        candidates: int | None = None,
    ) -> None:
        """Raise the ``ValueError`` a query with these options would raise, now (for constructors)."""
        self._plan("probe", k, None, None, fusion, weights, rrf_k, candidates)

    def _dense_request(self, plan: _Plan, embedding: Sequence[float] | None) -> dict[str, Any]:
        request: dict[str, Any] = {
            "n_results": plan.candidates,
            "where": plan.where,
            "where_document": plan.where_document,
            "include": ["distances"],
        }
        if embedding is None:
            request["query_texts"] = [plan.query]
        else:
            request["query_embeddings"] = [list(map(float, embedding))]
        return request

    def _dense_pairs(self, plan: _Plan, result: Mapping[str, Any]) -> list[tuple[str, float]]:
        ids = result["ids"][0] if result["ids"] else []
        distances = result["distances"][0] if result.get("distances") else []
        return [(doc_id, self._to_similarity(float(d))) for doc_id, d in zip(ids, distances)]

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rerank-ext-sparse")
        return self._executor

    def close(self) -> None:
        """Stop the worker threads (they also stop when the object is garbage-collected)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def _dense(self, plan: _Plan) -> list[tuple[str, float]]:
        embedding = self.embedder.embed_query(plan.query) if self.embedder is not None else None
        result = chroma.call(
            self.collection, "running the dense query", self.collection.query,
            **self._dense_request(plan, embedding),
        )
        return self._dense_pairs(plan, result)

    async def _adense(self, plan: _Plan) -> list[tuple[str, float]]:
        if self.async_collection is None:
            return await asyncio.to_thread(self._dense, plan)
        embedding = None
        if self.embedder is not None:
            aembed = getattr(self.embedder, "aembed_query", None)
            if aembed is not None:
                embedding = await aembed(plan.query)
            else:
                embedding = await asyncio.to_thread(self.embedder.embed_query, plan.query)
        result = await chroma.acall(
            self.async_collection, "running the dense query", self.async_collection.query,
            **self._dense_request(plan, embedding),
        )
        return self._dense_pairs(plan, result)

    def _sparse(self, plan: _Plan) -> list[tuple[str, float]]:
        self._sync()
        allowed: set[str] | None = None
        if plan.where is not None or plan.where_document is not None:
            allowed = set()
            for page in chroma.iter_pages(
                self.collection, where=plan.where, where_document=plan.where_document,
                page_size=self.page_size,
            ):
                allowed.update(page["ids"])
            if not allowed:
                return []
        return self.index.search(plan.query, plan.candidates, allowed_ids=allowed)

    def _fuse(self, plan: _Plan, dense, sparse) -> list[FusedResult]:
        return fuse({"dense": dense, "sparse": sparse}, mode=plan.fusion, weights=plan.weights, rrf_k=plan.rrf_k)

    def _hits(self, plan: _Plan, fused: list[FusedResult], records: Mapping[str, dict[str, Any]]) -> list[HybridHit]:
        hits: list[HybridHit] = []
        missing: list[str] = []
        changed: list[tuple[str, Any]] = []
        for result in fused:
            record = records.get(result.id)
            if record is None:
                missing.append(result.id)
                continue
            document = record.get("document")
            if isinstance(document, str) and result.id in self.index:
                stored = self.index.hash_of(result.id)
                if stored is not None and stored != content_hash(document):
                    changed.append((result.id, document))
            hits.append(
                HybridHit(
                    id=result.id,
                    document=document if isinstance(document, str) else "",
                    metadata=dict(record.get("metadata") or {}),
                    score=result.score,
                    fusion=plan.fusion,
                    dense_score=result.side_scores.get("dense"),
                    sparse_score=result.side_scores.get("sparse"),
                    dense_rank=result.side_ranks.get("dense"),
                    sparse_rank=result.side_ranks.get("sparse"),
                )
            )
        if missing or changed:
            with self._lock:
                self.index.remove(missing)
                self._state.known_ids.difference_update(missing)
                if changed:
                    self.index.upsert([i for i, _ in changed], [d for _, d in changed])
                    logger.info("Re-tokenized %d documents whose text changed in Chroma", len(changed))
        return hits

    def query(
        self,
        query: str,
        k: int = 10,
        *,
        where: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
        fusion: str | None = None,
        weights: Mapping[str, float] | None = None,
        rrf_k: float | None = None,
        candidates: int | None = None,
    ) -> list[HybridHit]:
        """The ``k`` best documents for ``query``, best first (fewer when fewer match).

        ``where`` / ``where_document`` are Chroma filters applied to both sides. ``fusion``,
        ``weights``, ``rrf_k`` and ``candidates`` override the instance's settings for this query.
        An empty or blank query returns ``[]``; ``k <= 0`` raises ``ValueError``.
        """
        plan = self._plan(query, k, where, where_document, fusion, weights, rrf_k, candidates)
        if plan is None:
            return []
        # The sparse side (with its collection check) runs in a worker thread while this thread
        # runs the dense query: Chroma's calls release the GIL.
        sparse_future = self._pool().submit(self._sparse, plan)
        try:
            dense = self._dense(plan)
        finally:
            sparse = sparse_future.result()
        fused = self._fuse(plan, dense, sparse)
        hits: list[HybridHit] = []
        start = 0
        # Read the best results back from Chroma; ids that no longer exist are dropped and the
        # next ones read, so a deleted document is never returned.
        while len(hits) < plan.k and start < len(fused):
            window = fused[start : start + plan.k - len(hits)]
            records = chroma.get_by_ids(
                self.collection, [r.id for r in window], include=["documents", "metadatas"],
                page_size=self.page_size,
            )
            hits.extend(self._hits(plan, window, records))
            start += len(window)
        return hits

    async def aquery(
        self,
        query: str,
        k: int = 10,
        *,
        where: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
        fusion: str | None = None,
        weights: Mapping[str, float] | None = None,
        rrf_k: float | None = None,
        candidates: int | None = None,
    ) -> list[HybridHit]:
        """:meth:`query` with the dense and sparse sides running concurrently; the dense side is
        truly async when ``async_collection`` is set, the sparse side runs in a worker thread."""
        plan = self._plan(query, k, where, where_document, fusion, weights, rrf_k, candidates)
        if plan is None:
            return []
        dense, sparse = await asyncio.gather(self._adense(plan), asyncio.to_thread(self._sparse, plan))
        fused = self._fuse(plan, dense, sparse)
        hits: list[HybridHit] = []
        start = 0
        while len(hits) < plan.k and start < len(fused):
            window = fused[start : start + plan.k - len(hits)]
            ids = [r.id for r in window]
            if self.async_collection is not None:
                records = await chroma.aget_by_ids(
                    self.async_collection, ids, include=["documents", "metadatas"], page_size=self.page_size
                )
            else:
                records = await asyncio.to_thread(
                    chroma.get_by_ids, self.collection, ids, include=["documents", "metadatas"],
                    page_size=self.page_size,
                )
            hits.extend(self._hits(plan, window, records))
            start += len(window)
        return hits

