"""A BM25 index that mirrors one Chroma collection: it follows the collection, saves itself, and
carries writes to both.

Following the collection:
    * writes made through :meth:`BM25Mirror.write` and :meth:`BM25Mirror.delete` reach Chroma and
      the BM25 index at once;
    * writes made by anyone else (LlamaIndex ``ChromaVectorStore``, ``langchain-chroma``, the raw
      client) are noticed by comparing ``collection.count()`` with the ids it knows every
      ``check_interval`` seconds, then reading the newest documents (the collection only grew) or
      the collection's ids (ids only, in pages), indexing only the added documents and dropping
      the deleted ones; the ids are also read every ``id_check_interval`` seconds. With
      ``background_refresh`` (the default) a refresher thread does this off the query path, so no
      query waits for a scan of the collection: it applies other writers' changes at most every
      ``rebuild_interval`` and paces its id scans within ``scan_budget``. An interval of 0 asks
      for the check on every query, synchronously;
    * a document found deleted or changed while reading results back is reported through
      :meth:`BM25Mirror.repair`; :meth:`BM25Mirror.refresh` re-reads everything.

The index is saved atomically beside a PersistentClient's data (or in a given folder) and loaded
on first use without re-tokenizing; a damaged or foreign saved file is rebuilt from Chroma.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rerank_ext_core import chroma
from rerank_ext_core._validation import check_bool, check_items, check_number, check_texts
from rerank_ext_core.bm25 import BM25Index
from rerank_ext_core.tokenization import Tokenizer

__all__ = ["BM25Mirror"]

logger = logging.getLogger(__name__)

_INDEX_FOLDER = "rerank_ext_bm25"
_WRITE_METHODS = ("add", "upsert", "update")
_SCAN_PAGE_SIZE = 10_000
_SCAN_DUTY = 0.25  # between scan pages the refresher pauses three times as long as the page took
_APPEND_MARGIN = 64  # positions re-read before the known end, in case of deletes


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


def _check_ids(ids: Any) -> list[str]:
    ids = check_items("ids", ids, str, "string")
    blank = [position for position, doc_id in enumerate(ids) if not doc_id.strip()]
    if blank:
        msg = f"ids[{blank[0]}] is blank; every id must be a non-empty string."
        raise ValueError(msg)
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicate = next(doc_id for doc_id in ids if doc_id in seen or seen.add(doc_id))
        msg = f"ids name {duplicate!r} more than once; pass each id once per call."
        raise ValueError(msg)
    return ids


def _refresh_loop(mirror_ref: Callable[[], BM25Mirror | None], wake: threading.Event) -> None:
    """The refresher thread: a check every ``check_interval`` seconds until the mirror is closed or
    garbage-collected (it holds only a weak reference). A failed round is logged and retried."""
    while True:
        mirror = mirror_ref()
        if mirror is None or mirror._closed:
            return
        interval = mirror.check_interval
        try:
            mirror._background_check()
            mirror.index.refresh_matrix()  # the BM25 matrix too is rebuilt here, not by a query
        except Exception as exc:  # noqa: BLE001  (a server down, a timeout: the next round retries)
            logger.warning("Background refresh of %r failed (%s); retrying in %.0f s.",
                           getattr(mirror.collection, "name", "?"), exc, interval)
        del mirror
        wake.wait(interval)
        wake.clear()


class BM25Mirror:
    """The BM25 side of one Chroma collection, kept in step with it (see the module docstring).

    Options are those of :class:`~rerank_ext_core.hybrid.ChromaHybridSearch`, which documents
    them; ``embed_documents`` embeds the texts of writes that come without embeddings.
    """

    def __init__(
        self,
        collection: Any,
        *,
        embed_documents: Callable[[list[str]], Sequence[Sequence[float]]] | None = None,
        tokenizer: Tokenizer | None = None,
        bm25_params: Mapping[str, Any] | None = None,
        index_dir: str | os.PathLike[str] | None = "auto",
        check_interval: float = 1.0,
        id_check_interval: float = 10.0,
        autosave: bool = True,
        page_size: int = chroma.DEFAULT_PAGE_SIZE,
        background_refresh: bool = True,
    ) -> None:
        self.collection = collection
        self.background_refresh = check_bool("background_refresh", background_refresh)
        self.check_interval = check_number("check_interval", check_interval, low=0, example="check_interval=1.0 (seconds)")
        self.id_check_interval = check_number(
            "id_check_interval", id_check_interval, low=0, example="id_check_interval=10.0 (seconds)"
        )
        self.autosave = bool(autosave)
        self.page_size = page_size
        self.index = BM25Index(tokenizer, **dict(bm25_params or {}))
        self.index_path = self._resolve_index_path(index_dir)
        self._embed_documents = embed_documents
        self._lock = threading.RLock()
        self._state = _SyncState()
        self._touched: set[str] | None = None
        """Ids written, deleted or repaired while a background scan runs: the scan's older view
        of them must not undo those changes."""
        self._refresher: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = False
        self.background_scans = 0
        """Id scans the refresher has made (for monitoring and tests)."""
        self._last_apply = 0.0
        self.rebuild_interval = max(5.0, self.check_interval)
        """Seconds between the refresher's rounds that apply other writers' changes (each ends in a
        BM25 rebuild, about 0.15 s at 100k documents); our own writes are applied at once."""
        self.scan_page_size = max(page_size, _SCAN_PAGE_SIZE)
        """Ids per request of an id scan (ids only, so pages can be larger than ``page_size``:
        Chroma's offset paging costs per request, growing with the offset)."""
        self.scan_budget = 0.02
        """The share of wall time the periodic id scan may take on average: after a scan that kept
        the refresher busy ``t`` seconds, the next one starts no sooner than ``t / scan_budget``
        seconds later (and no sooner than ``id_check_interval``), so its cost stays bounded as the
        collection grows; its pages are spaced out so that no stretch of queries shares the
        server with it for long."""
        self._next_scan = 0.0
        self.appended_reads = 0
        """Rounds where reading the newest page was enough (no scan of every id)."""
        self._followers: list[Any] = []
        self._follow_queue: list[tuple[str, list[str], list[str] | None]] = []
        self._follow_lock = threading.Lock()
        self._depth = 0

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
        """Bring the index fully up to date now: re-reads every document (in pages),
        re-tokenizes the ones whose text changed, drops deleted ones, adds new ones."""
        with self._changing():
            self._load_saved_locked()
            current: set[str] = set()
            skipped: set[str] = set()
            changed = False
            with _indexing_progress(self.collection) as bar:
                for page in chroma.iter_pages(self.collection, include=["documents"], page_size=self.page_size):
                    ids, documents = page["ids"], page["documents"]
                    current.update(ids)
                    before = {doc_id: self.index.hash_of(doc_id) for doc_id in ids}
                    skipped.update(self._index_upsert(ids, documents))
                    changed = changed or any(self.index.hash_of(i) != before[i] for i in ids)
                    bar.update(len(ids))
            removed = self._state.known_ids - current
            self._index_remove(removed)
            changed = changed or bool(removed) or skipped != self._state.skipped_ids
            now = time.monotonic()
            self._state = _SyncState(current, skipped, True, last_id_check=now, last_count_check=now)
            if changed:
                self._save_locked()
        self.index.refresh_matrix()

    def sync(self) -> None:
        """The query-time check. The first call loads or builds the index. Then, with a background
        refresher, nothing (the refresher checks); otherwise the count when ``check_interval``
        has passed and the ids when ``id_check_interval`` has passed or the count moved."""
        state = self._state
        if state.initialized and self._refreshes_in_background():
            self._ensure_refresher()
            return
        if state.initialized:
            now = time.monotonic()
            if now - state.last_count_check < self.check_interval:
                return
            state.last_count_check = now
            count = chroma.call(self.collection, "counting documents", self.collection.count)
            due = now - state.last_id_check >= self.id_check_interval
            if count == len(state.known_ids) and not due:
                return
        with self._changing():
            if not self._state.initialized:
                self._load_saved_locked()
            if not self._state.initialized:
                self.refresh()
            else:
                self._sync_ids_locked()
        if self._refreshes_in_background():
            self._ensure_refresher()

    # ------------------------------------------------------------------- the background refresher
    def _refreshes_in_background(self) -> bool:
        return self.background_refresh and self.check_interval > 0 and self.id_check_interval > 0 and not self._closed

    def _ensure_refresher(self) -> None:
        if self._refresher is not None and self._refresher.is_alive():
            return
        with self._lock:
            if self._refresher is None or not self._refresher.is_alive():
                self.index.defer_rebuilds = True
                self._refresher = threading.Thread(
                    target=_refresh_loop, args=(weakref.ref(self), self._wake),
                    name=f"rerank-ext-refresh-{self.collection.name}", daemon=True,
                )
                self._refresher.start()

    def close(self) -> None:
        """Stop the background refresher (it also stops once this object is garbage-collected)."""
        self._closed = True
        self.index.defer_rebuilds = False
        self._wake.set()
        if self._refresher is not None and self._refresher is not threading.current_thread():
            self._refresher.join(timeout=5)

    def _background_check(self) -> None:
        """One round of the refresher: the count; then, at most every ``rebuild_interval``, other
        writers' changes (the newest documents when the collection only grew, else an id scan);
        and the periodic id scan when due. Chroma is read without the lock; only applying the
        difference takes it."""
        state = self._state
        if not state.initialized:
            return
        now = time.monotonic()
        count = chroma.call(self.collection, "counting documents", self.collection.count)
        state.last_count_check = now
        known = len(state.known_ids)
        scan_due = now - state.last_id_check >= self.id_check_interval and now >= self._next_scan
        if not scan_due and (count == known or now - self._last_apply < self.rebuild_interval):
            return
        self._last_apply = now
        if not scan_due and count > known and self._read_appended(count - known):
            return
        self._scan_ids()

    def _scan_ids(self) -> None:
        """Every id, read in paced pages, compared with the index; the difference is applied under
        the lock without undoing what was written, deleted or repaired meanwhile."""
        with self._tracking_touched():
            current: set[str] = set()
            busy = 0.0
            pages = chroma.iter_pages(self.collection, page_size=self.scan_page_size)
            while True:
                started = time.monotonic()
                page = next(pages, None)
                took = time.monotonic() - started
                busy += took
                if page is None:
                    break
                current.update(page["ids"])
                if self._closed or self._wake.wait(took * (1 / _SCAN_DUTY - 1)):
                    return
            with self._lock:
                candidates = sorted(current - self._state.known_ids - self._touched)
            records = (chroma.get_by_ids(self.collection, candidates, include=["documents"], page_size=self.page_size)
                       if candidates else {})
            # Offset paging can skip a live id when documents are deleted during the scan: an id
            # missing from the scan is dropped only if Chroma confirms it is gone.
            with self._lock:
                unseen = sorted(self._state.known_ids - current - self._touched)
            if unseen:
                still_there = chroma.get_by_ids(self.collection, unseen, include=[], page_size=self.page_size)
                current.update(still_there)
            with self._changing():
                state = self._state
                touched = self._touched
                removed = state.known_ids - current - touched
                added = [doc_id for doc_id in candidates if doc_id in records and doc_id not in touched]
                skipped = set(self._index_upsert(added, [records[i]["document"] for i in added])) if added else set()
                self._index_remove(removed)
                state.known_ids.difference_update(removed)
                state.known_ids.update(added)
                state.skipped_ids = (state.skipped_ids - removed) | skipped
                state.last_id_check = state.last_count_check = time.monotonic()
                self._next_scan = state.last_id_check + busy / self.scan_budget
                self.background_scans += 1
                if added or removed:
                    logger.info("Collection %r changed outside this index: %d added, %d removed",
                                self.collection.name, len(added), len(removed))
                    self._save_locked()

    # ------------------------------------------------------------------ the index and its followers
    def add_follower(self, follower: Any) -> None:
        """Something kept in step with the index (a :class:`~rerank_ext_core.colbert_store.ColBERTVectorStore`):
        its ``upsert(ids, texts)`` and ``remove(ids)`` are called with every change, and its
        ``follow(mirror)`` once, now, to catch up."""
        self._followers.append(follower)
        follower.follow(self)

    def _index_upsert(self, ids: Sequence[str], texts: Sequence[str]) -> list[str]:
        skipped = self.index.upsert(ids, texts)
        if self._followers:
            with self._follow_lock:
                self._follow_queue.append(("upsert", list(ids), list(texts)))
        return skipped

    def _index_remove(self, ids: Any) -> None:
        ids = list(ids)
        self.index.remove(ids)
        if self._followers and ids:
            with self._follow_lock:
                self._follow_queue.append(("remove", ids, None))

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """The index lock for a change; the followers hear of it after the lock is released, so a
        follower that encodes (a ColBERT store) never holds up writes, repairs or queries."""
        with self._lock:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                outermost = self._depth == 0
        if outermost:
            self._notify_followers()

    def _notify_followers(self) -> None:
        while True:
            with self._follow_lock:
                if not self._follow_queue:
                    return
                change, ids, texts = self._follow_queue.pop(0)
            for follower in self._followers:
                if change == "upsert":
                    follower.upsert(ids, texts)
                else:
                    follower.remove(ids)

    def _read_appended(self, grown: int) -> bool:
        """The cheap path for a collection that only grew: read from just before the known end
        (Chroma's offsets follow insertion order) instead of every id. True when that found at
        least ``grown`` new documents (more: added since the count; all are indexed) and a count
        taken after the read shows that nothing was deleted; otherwise the caller falls back to
        the id scan. Deletes hidden by as many adds before the first count are found by the
        periodic scan, and are never returned meanwhile (results are read back from Chroma)."""
        known = len(self._state.known_ids)
        with self._tracking_touched():
            page = chroma.call(self.collection, "reading the newest documents", self.collection.get,
                               offset=max(0, known - _APPEND_MARGIN), limit=grown + 2 * _APPEND_MARGIN,
                               include=["documents"])
            count = chroma.call(self.collection, "counting documents", self.collection.count)
            with self._changing():
                fresh = [(doc_id, text) for doc_id, text in zip(page["ids"], page["documents"])
                         if doc_id not in self._state.known_ids and doc_id not in self._touched]
                if len(fresh) < grown or len(self._state.known_ids) + len(fresh) > count:
                    return False
                ids = [doc_id for doc_id, _ in fresh]
                skipped = set(self._index_upsert(ids, [text for _, text in fresh]))
                self._state.known_ids.update(ids)
                self._state.skipped_ids |= skipped
                self.appended_reads += 1
                self._save_locked()
        return True

    @contextlib.contextmanager
    def _tracking_touched(self) -> Iterator[None]:
        """While Chroma is read without the lock, remember the ids our own writes, deletes and
        repairs touch: the older view must not undo them."""
        with self._lock:
            self._touched = set()
        try:
            yield
        finally:
            with self._lock:
                self._touched = None

    def _note_touched(self, ids: Any) -> None:
        if self._touched is not None:
            self._touched.update(ids)

    def _sync_ids_locked(self) -> None:
        state = self._state
        current: set[str] = set()
        for page in chroma.iter_pages(self.collection, page_size=self.scan_page_size):
            current.update(page["ids"])
        removed = state.known_ids - current
        added = sorted(current - state.known_ids)
        skipped = state.skipped_ids - removed
        if added:
            records = chroma.get_by_ids(self.collection, added, include=["documents"], page_size=self.page_size)
            found = [doc_id for doc_id in added if doc_id in records]
            skipped |= set(self._index_upsert(found, [records[i]["document"] for i in found]))
            current -= set(added) - set(found)
        self._index_remove(removed)
        now = time.monotonic()
        self._state = _SyncState(current, skipped, True, last_id_check=now, last_count_check=now)
        if added or removed:
            logger.info(
                "Collection %r changed outside this index: %d added, %d removed",
                self.collection.name, len(added), len(removed),
            )
            self._save_locked()

    def repair(self, missing: Sequence[str] = (), changed: Mapping[str, str] | None = None) -> None:
        """What a read-back found: ``missing`` ids no longer exist in Chroma, ``changed`` maps ids
        to their new text. The index forgets the former and re-tokenizes the latter."""
        if not missing and not changed:
            return
        with self._changing():
            self._note_touched(missing)
            self._note_touched(changed or ())
            self._index_remove(missing)
            self._state.known_ids.difference_update(missing)
            if changed:
                self._index_upsert(list(changed), list(changed.values()))
                logger.info("Re-tokenized %d documents whose text changed in Chroma", len(changed))

    def search(
        self, query: str, n: int, where: dict[str, Any] | None = None, where_document: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """The sparse side of a query: sync, then BM25 over the ids that pass the Chroma filters."""
        self.sync()
        allowed: set[str] | None = None
        if where is not None or where_document is not None:
            allowed = set()
            for page in chroma.iter_pages(
                self.collection, where=where, where_document=where_document, page_size=self.page_size
            ):
                allowed.update(page["ids"])
            if not allowed:
                return []
        return self.index.search(query, n, allowed_ids=allowed)

    # ------------------------------------------------------------------------------ persistence
    def _load_saved_locked(self) -> None:
        if self._state.initialized or self.index_path is None:
            return
        extra = self.index.load(self.index_path, expect={"collection_id": str(self.collection.id)})
        if extra is None:
            return
        skipped = set(extra.get("skipped_ids", []))
        self._state = _SyncState(set(self.index.ids()) | skipped, skipped, True, 0.0)
        logger.info("Loaded the BM25 index of %r from %s", self.collection.name, self.index_path)

    def _save_locked(self, *, requested: bool = False) -> None:
        """Save (atomically). An autosave that fails (a full disk, a read-only folder) is logged
        and does not fail the write that caused it: Chroma and the in-memory index already agree,
        the previous file stays intact, and the next save tries again. A requested save raises."""
        if self.index_path is None or not (requested or self.autosave) or not self._state.initialized:
            return
        extra = {"collection_id": str(self.collection.id), "skipped_ids": sorted(self._state.skipped_ids)}
        try:
            self.index.save(self.index_path, extra=extra)
        except OSError as exc:
            if requested:
                raise
            logger.warning(
                "Could not save the BM25 index to %s (%s); the previous file is kept and the next "
                "save tries again.", self.index_path, exc,
            )

    def save(self) -> Path | None:
        """Save the index now (atomically). Returns the file, or None when no place is set."""
        if self.index_path is None:
            return None
        self.sync()
        with self._lock:
            self._save_locked(requested=True)
        return self.index_path

    # ---------------------------------------------------------------------------------- writes
    def write(
        self,
        method: str,
        ids: Sequence[str],
        documents: Sequence[str] | None,
        metadatas: Sequence[Mapping[str, Any] | None] | None,
        embeddings: Sequence[Sequence[float]] | None,
    ) -> None:
        """``collection.add`` / ``upsert`` / ``update``, then the same change in the index.

        Everything is checked before anything is written: a refused write changes nothing."""
        ids = _check_ids(ids)
        if not ids:
            return
        if documents is not None:
            documents = check_texts("documents", documents)
        if metadatas is not None:
            metadatas = check_items("metadatas", metadatas, (Mapping, type(None)), "dict or None")
        for name, values in (("documents", documents), ("metadatas", metadatas), ("embeddings", embeddings)):
            if values is not None and len(values) != len(ids):
                msg = f"{method} got {len(ids)} ids but {len(values)} {name}; pass one per id."
                raise ValueError(msg)
        if method in ("add", "update"):
            # add() keeps the stored record of an existing id and update() ignores a missing one
            # (Chroma's rules): leave those ids out here too, so that BM25 stays in step.
            existing = chroma.get_by_ids(self.collection, ids, include=[], page_size=self.page_size)
            keep = [p for p, doc_id in enumerate(ids) if (doc_id in existing) == (method == "update")]
            if len(keep) < len(ids):
                logger.info("%s: %d ids left as they are (%s)", method, len(ids) - len(keep),
                            "already exist; use upsert to replace them" if method == "add" else "not in the collection")
                if not keep:
                    return
                ids, documents, metadatas, embeddings = (
                    None if values is None else [values[p] for p in keep]
                    for values in (ids, documents, metadatas, embeddings)
                )
        if embeddings is None and documents is not None and self._embed_documents is not None:
            embeddings = self._embed_documents(list(documents))
        request: dict[str, Any] = {"ids": ids}
        if documents is not None:
            request["documents"] = list(documents)
        if metadatas is not None:
            request["metadatas"] = [dict(m) if m else None for m in metadatas]
        if embeddings is not None:
            request["embeddings"] = [list(map(float, e)) for e in embeddings]
        # The lock spans the Chroma write and the index update, so two writers of one id can't
        # leave Chroma holding one's text and BM25 the other's.
        with self._changing():
            self._note_touched(ids)
            chroma.call(self.collection, f"{method} documents", getattr(self.collection, method), **request)
            if documents is not None:
                skipped = set(self._index_upsert(ids, list(documents)))
                self._state.skipped_ids = (self._state.skipped_ids - set(ids)) | skipped
            self._state.known_ids.update(ids)
            self._save_locked()
        self.index.refresh_matrix()  # our writes are searchable at once: the writer pays the rebuild

    def delete(self, ids: Sequence[str] | None = None, *, where: dict[str, Any] | None = None) -> None:
        """Delete records by id and/or by a ``where`` filter, from Chroma and the index."""
        if ids is None and where is None:
            msg = "delete needs ids=[...] or where={...}; with neither it would have nothing to select."
            raise ValueError(msg)
        if where is not None and not isinstance(where, Mapping):
            msg = f"where must be a dict (a Chroma filter such as {{'topic': 'cats'}}), got {type(where).__name__}."
            raise TypeError(msg)
        targets: set[str] = set(_check_ids(ids) if ids is not None else [])
        if where is not None:
            for page in chroma.iter_pages(self.collection, where=where, page_size=self.page_size):
                targets.update(page["ids"])
        if not targets:
            return
        ordered = sorted(targets)
        with self._changing():
            self._note_touched(ordered)
            for start in range(0, len(ordered), self.page_size):
                batch = ordered[start : start + self.page_size]
                chroma.call(self.collection, "deleting documents", self.collection.delete, ids=batch)
            self._index_remove(ordered)
            self._state.known_ids.difference_update(ordered)
            self._state.skipped_ids.difference_update(ordered)
            self._save_locked()
