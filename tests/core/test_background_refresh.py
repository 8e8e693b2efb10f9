"""The background refresher: no query waits for an id scan, other writers' documents still arrive,
and a scan's older view never undoes a write or a delete made while it ran."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from rerank_ext_core import chroma
from rerank_ext_core.hybrid import ChromaHybridSearch
from tests.hybrid_fixtures import fill

pytest.importorskip("chromadb")


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


class ScanGate:
    """Wraps chroma.iter_pages: records which threads scan, and can hold a background scan."""

    def __init__(self, monkeypatch):
        self.threads: list[str] = []
        self.hold = threading.Event()
        self.held = threading.Event()
        self.release = threading.Event()
        original = chroma.iter_pages

        def iter_pages(collection, *args, **kwargs):
            full_scan = not kwargs.get("where") and not kwargs.get("where_document")
            if full_scan:
                self.threads.append(threading.current_thread().name)
                if self.hold.is_set() and threading.current_thread().name.startswith("rerank-ext-refresh"):
                    self.held.set()
                    assert self.release.wait(20)
            yield from original(collection, *args, **kwargs)

        monkeypatch.setattr(chroma, "iter_pages", iter_pages)


def test_queries_never_scan_and_other_writers_documents_arrive(ephemeral_collection, embedder, monkeypatch):
    fill(ephemeral_collection, embedder)
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, check_interval=0.05, id_check_interval=0.2)
    try:
        search.query("dogs", k=1)  # the first query builds the index
        gate = ScanGate(monkeypatch)
        ephemeral_collection.add(ids=["q1"], documents=["Quokkas smile at tourists."], embeddings=embedder.embed_documents(["q"]))
        assert wait_for(lambda: search.query("quokkas smile", k=1)[0].sparse_rank == 1)
        assert all(name.startswith("rerank-ext-refresh") for name in gate.threads)  # off the query path
        assert search.mirror.appended_reads >= 1  # the collection only grew: the newest page was enough
        # Even with the refresher stalled and every check long overdue, a query does not scan.
        monkeypatch.setattr(search.mirror, "_background_check", lambda: None)
        until = time.monotonic() + 0.6
        while time.monotonic() < until:
            search.query("parrots", k=2)
            time.sleep(0.01)
        assert all(name.startswith("rerank-ext-refresh") for name in gate.threads)
    finally:
        search.close()


@pytest.fixture
def held_scan(ephemeral_collection, embedder, monkeypatch):
    """A search whose background scan is stuck in the middle, and the gate that holds it."""
    fill(ephemeral_collection, embedder)
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, check_interval=0.05, id_check_interval=0.05)
    search.query("dogs", k=1)
    gate = ScanGate(monkeypatch)
    gate.hold.set()
    assert gate.held.wait(10)
    yield search, gate
    gate.release.set()
    search.close()


def test_a_query_does_not_wait_for_a_running_scan(held_scan):
    search, _ = held_scan
    hits = search.query("parrots speech", k=1)  # returns while the scan is held
    assert hits[0].id == "a3"


def test_writes_and_deletes_during_a_scan_are_not_undone(held_scan):
    search, gate = held_scan
    search.add(ids=["new"], documents=["Axolotls regrow limbs."])
    search.delete(ids=["a3"])
    gate.hold.clear()
    gate.release.set()
    before = search.mirror.background_scans
    assert wait_for(lambda: search.mirror.background_scans > before + 1)
    assert "new" in search.index and "a3" not in search.index
    assert search.query("axolotls regrow", k=1)[0].id == "new"
    assert "a3" not in [h.id for h in search.query("parrots speech", k=10)]


def test_a_stale_scan_view_is_applied_without_undoing_later_changes(ephemeral_collection, embedder):
    """The race itself, step by step: a scan's id list is read, then a write and a delete happen,
    then the scan's difference is applied."""
    fill(ephemeral_collection, embedder)
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, background_refresh=False)
    search.query("dogs", k=1)
    mirror = search.mirror
    stale_ids = {doc_id for page in chroma.iter_pages(ephemeral_collection) for doc_id in page["ids"]}
    original = chroma.iter_pages

    def stale_pages(collection, *args, **kwargs):
        if kwargs.get("where") or kwargs.get("where_document"):
            yield from original(collection, *args, **kwargs)
            return
        search.add(ids=["late"], documents=["Pangolins roll into balls."])  # after the ids were read
        search.delete(ids=["a1"])
        yield {"ids": sorted(stale_ids)}

    chroma.iter_pages, saved = stale_pages, chroma.iter_pages
    try:
        mirror.id_check_interval = 0.0001
        mirror._state.last_id_check = 0.0
        mirror._background_check()
    finally:
        chroma.iter_pages = saved
    assert "late" in mirror.index  # not dropped although the stale list lacks it
    assert "a1" not in mirror.index  # not re-added although the stale list has it


def test_the_refresher_stops_on_close_and_when_collected(ephemeral_collection, embedder):
    fill(ephemeral_collection, embedder)
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, check_interval=0.05)
    search.query("dogs", k=1)
    thread = search.mirror._refresher
    assert thread is not None and thread.is_alive()
    search.close()
    assert not thread.is_alive()
    again = ChromaHybridSearch(ephemeral_collection, embedder=embedder, check_interval=0.05)
    again.query("dogs", k=1)
    thread = again.mirror._refresher
    del again
    gc.collect()
    assert wait_for(lambda: not thread.is_alive(), timeout=5)


def test_zero_intervals_and_background_refresh_false_check_on_the_query_path(ephemeral_collection, embedder):
    fill(ephemeral_collection, embedder)
    for options in ({"check_interval": 0, "id_check_interval": 0}, {"background_refresh": False, "check_interval": 0}):
        search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, **options)
        search.query("dogs", k=1)
        assert search.mirror._refresher is None
        name = f"x{len(options)}{options.get('id_check_interval', 'b')}"
        ephemeral_collection.add(ids=[name], documents=["Okapis have long tongues."], embeddings=embedder.embed_documents(["o"]))
        search.query("okapis tongues", k=1)
        assert name in search.index  # seen by the very next query
    with pytest.raises(TypeError, match="background_refresh=.yes. is invalid: pass True or False"):
        ChromaHybridSearch(ephemeral_collection, embedder=embedder, background_refresh="yes")


def test_a_collection_that_only_grew_is_read_from_its_newest_page(ephemeral_collection, embedder, monkeypatch):
    fill(ephemeral_collection, embedder)
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, background_refresh=False)
    search.query("dogs", k=1)
    search.mirror.rebuild_interval = 0  # apply other writers' changes at every round
    gate = ScanGate(monkeypatch)
    ephemeral_collection.add(ids=["g1", "g2"], documents=["Geckos climb glass.", "Gannets dive deep."],
                             embeddings=embedder.embed_documents(["g1", "g2"]))
    search.mirror._background_check()
    assert gate.threads == []  # no scan of every id
    assert "g1" in search.index and "g2" in search.index and search.mirror.appended_reads == 1
    ephemeral_collection.delete(ids=["a1"])  # a delete and an add: the count alone can't tell, so a full scan
    ephemeral_collection.add(ids=["g3", "g4"], documents=["Grebes nest on water.", "Gibbons swing."],
                             embeddings=embedder.embed_documents(["g3", "g4"]))
    search.mirror._background_check()
    assert "g3" in search.index and "a1" not in search.index


def test_documents_added_after_the_count_are_indexed_and_deletes_still_force_a_scan(ephemeral_collection, embedder, monkeypatch):
    fill(ephemeral_collection, embedder)
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, background_refresh=False)
    search.query("dogs", k=1)
    mirror = search.mirror
    gate = ScanGate(monkeypatch)
    ephemeral_collection.add(ids=["n1", "n2"], documents=["Narwhals have tusks.", "Newts live in ponds."],
                             embeddings=embedder.embed_documents(["n1", "n2"]))
    assert mirror._read_appended(1)  # the count saw one new document; the read found two: both are kept
    assert "n1" in mirror.index and "n2" in mirror.index and gate.threads == []
    ephemeral_collection.delete(ids=["a2"])
    ephemeral_collection.add(ids=["n3", "n4"], documents=["Nightjars hunt at dusk.", "Nutrias dig burrows."],
                             embeddings=embedder.embed_documents(["n3", "n4"]))
    assert not mirror._read_appended(1)  # two new, but the count after the read shows a delete
    assert "n3" not in mirror.index


def test_other_writers_changes_are_applied_at_most_every_rebuild_interval(ephemeral_collection, embedder):
    fill(ephemeral_collection, embedder)
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, background_refresh=False)
    search.query("dogs", k=1)
    mirror = search.mirror
    mirror.rebuild_interval = 3600
    for doc_id, text in (("b1", "Bison graze the plains."), ("b2", "Bats sleep upside down.")):
        ephemeral_collection.add(ids=[doc_id], documents=[text], embeddings=embedder.embed_documents([text]))
        mirror._background_check()
    assert "b1" in mirror.index and "b2" not in mirror.index  # the second waits for the next round
    mirror._last_apply = 0.0
    mirror._background_check()
    assert "b2" in mirror.index


def test_the_periodic_scan_is_paced_and_its_share_of_time_bounded(ephemeral_collection, embedder, monkeypatch):
    fill(ephemeral_collection, embedder)
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, background_refresh=False)
    search.query("dogs", k=1)
    mirror = search.mirror
    original = chroma.iter_pages

    def slow_pages(collection, *args, **kwargs):
        for page in original(collection, *args, **kwargs):
            time.sleep(0.05)
            yield page

    pauses: list[float] = []
    monkeypatch.setattr(chroma, "iter_pages", slow_pages)
    monkeypatch.setattr(mirror._wake, "wait", lambda seconds: pauses.append(seconds) or False)
    mirror.scan_page_size = 2  # several pages
    mirror.id_check_interval = 0.0001
    mirror._state.last_id_check = 0.0
    mirror._background_check()
    assert mirror.background_scans == 1
    assert len(pauses) >= 2 and all(pause >= 3 * 0.05 * 0.9 for pause in pauses)  # three times each page
    assert mirror._next_scan - mirror._state.last_id_check >= 0.05 * len(pauses) / mirror.scan_budget
    time.sleep(0.01)
    mirror._background_check()  # id_check_interval has passed, but the scan's budget has not
    assert mirror.background_scans == 1


def test_close_interrupts_a_paced_scan(ephemeral_collection, embedder, monkeypatch):
    fill(ephemeral_collection, embedder)
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, check_interval=0.05, id_check_interval=0.05)
    search.query("dogs", k=1)
    mirror = search.mirror
    scanning = threading.Event()

    def endless_slow_pages(collection, *args, **kwargs):
        scanning.set()
        for _ in range(1000):
            time.sleep(0.05)
            yield {"ids": []}

    monkeypatch.setattr(chroma, "iter_pages", endless_slow_pages)
    assert scanning.wait(10)
    thread = mirror._refresher
    started = time.monotonic()
    search.close()
    assert not thread.is_alive() and time.monotonic() - started < 2
    assert "a1" in mirror.index
