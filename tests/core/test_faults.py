"""Faults injected on purpose into real components: a Chroma server killed mid-query and mid-write,
a server that answers slowly, a failing disk, concurrent writer processes, a deleted model folder."""

from __future__ import annotations

import errno
import logging
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rerank_ext_core._models import ModelNotFoundError
from rerank_ext_core.bm25 import BM25Index
from rerank_ext_core.chroma import ChromaUnavailableError
from rerank_ext_core.hybrid import ChromaHybridSearch
from tests.hybrid_fixtures import ANIMALS, fill, unique_name

chromadb = pytest.importorskip("chromadb")
ROOT = Path(__file__).resolve().parents[2]


class FaultyCollection:
    """A real collection whose ``method`` runs ``fault()`` before its ``nth`` call goes through."""

    def __init__(self, inner, method: str, nth: int, fault) -> None:
        self._inner, self._method, self._nth, self._fault = inner, method, nth, fault
        self.calls = 0

    def __getattr__(self, name):
        attribute = getattr(self._inner, name)
        if name != self._method:
            return attribute

        def faulty(*args, **kwargs):
            self.calls += 1
            if self.calls == self._nth:
                self._fault()
            return attribute(*args, **kwargs)

        return faulty


def _ids(hits):
    return [hit.id for hit in hits]


@pytest.fixture
def server_collection(http_client, embedder):
    collection = http_client.create_collection(unique_name(), embedding_function=embedder)
    fill(collection, embedder)
    return collection


@pytest.mark.server
def test_server_killed_in_the_middle_of_a_query(server_collection, embedder, chroma_server):
    faulty = FaultyCollection(server_collection, "query", 2, chroma_server.kill)
    search = ChromaHybridSearch(faulty, embedder=embedder, check_interval=0)
    assert _ids(search.query("dogs walks", k=1)) == ["a2"]
    try:
        with pytest.raises(ChromaUnavailableError, match=chroma_server.url):
            search.query("dogs walks", k=1)
    finally:
        chroma_server.start()
    assert _ids(search.query("dogs walks", k=1)) == ["a2"]  # the same object works again


@pytest.mark.server
def test_server_killed_in_the_middle_of_a_write_batch(server_collection, embedder, chroma_server):
    faulty = FaultyCollection(server_collection, "delete", 2, chroma_server.kill)
    search = ChromaHybridSearch(faulty, embedder=embedder, check_interval=0, id_check_interval=0, page_size=2)
    search.query("dogs", k=1)
    doomed = ["a1", "a2", "a3", "s1"]  # two pages of two: the server dies before the second
    try:
        with pytest.raises(ChromaUnavailableError):
            search.delete(doomed)
    finally:
        chroma_server.start()
    survivors = set(server_collection.get(include=[])["ids"])
    assert survivors == set(ANIMALS) - {"a1", "a2"}  # the first page was deleted, nothing else lost
    for _ in range(3):
        hits = _ids(search.query("cats dogs parrots python", k=8))
        assert not {"a1", "a2"} & set(hits)  # a deleted document is never returned
    search.refresh()
    assert set(search.index.ids()) == survivors  # converged
    search.delete(doomed)  # finishing the batch after the restart works
    assert set(server_collection.get(include=[])["ids"]) == survivors - {"a3", "s1"}


@pytest.mark.server
def test_server_killed_in_the_middle_of_an_add(server_collection, embedder, chroma_server):
    faulty = FaultyCollection(server_collection, "add", 1, chroma_server.kill)
    search = ChromaHybridSearch(faulty, embedder=embedder, check_interval=0, id_check_interval=0)
    search.query("dogs", k=1)
    try:
        with pytest.raises(ChromaUnavailableError):
            search.add(["p1"], ["Penguins cannot fly."])
    finally:
        chroma_server.start()
    assert "p1" not in search.index  # nothing half-written on our side
    search.add(["p1"], ["Penguins cannot fly."])  # the retry goes through (fault fired once)
    assert _ids(search.query("penguins", k=1)) == ["p1"]


class SlowProxy:
    """A TCP proxy on 127.0.0.1 in front of the Chroma server that holds responses back for
    ``delay`` seconds while ``delay`` is set."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay = 0.0
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, slow: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if slow and self.delay:
                    self._closed.wait(self.delay)
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._closed.set()
        self._listener.close()


@pytest.fixture
def slow_proxy(chroma_server, http_client):
    proxy = SlowProxy(chroma_server.port)
    yield proxy
    proxy.close()


@pytest.mark.server
def test_a_slow_server_times_out_instead_of_hanging(slow_proxy, server_collection, embedder):
    client = chromadb.HttpClient(host="127.0.0.1", port=slow_proxy.port)
    collection = client.get_collection(server_collection.name, embedding_function=embedder)
    search = ChromaHybridSearch(collection, embedder=embedder, timeout=1.0, check_interval=0)
    assert _ids(search.query("dogs walks", k=1)) == ["a2"]
    slow_proxy.delay = 30.0
    started = time.monotonic()
    with pytest.raises(ChromaUnavailableError, match="could not be reached"):
        search.query("dogs walks", k=1)
    assert time.monotonic() - started < 15  # the 1 s limit, not the 30 s stall
    slow_proxy.delay = 0.0
    assert _ids(search.query("dogs walks", k=1)) == ["a2"]


def test_a_failing_disk_keeps_the_previous_index_and_the_write(tmp_path, embedder, monkeypatch, caplog):
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    collection = client.create_collection(unique_name(), embedding_function=embedder)
    fill(collection, embedder)
    search = ChromaHybridSearch(collection, embedder=embedder)
    search.query("dogs", k=1)
    saved = search.index_path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with caplog.at_level(logging.WARNING):
        search.add(["p1"], ["Penguins cannot fly."])  # the write itself succeeds
    assert any("No space left" in r.getMessage() for r in caplog.records)
    assert _ids(search.query("penguins", k=1)) == ["p1"]
    assert search.index_path.read_bytes() == saved  # the previous file, intact
    with pytest.raises(OSError, match="No space left"):
        search.save()  # a requested save says so
    monkeypatch.undo()
    assert BM25Index().load(search.index_path, expect={"collection_id": str(collection.id)}) is not None
    reopened = ChromaHybridSearch(collection, embedder=embedder)
    assert _ids(reopened.query("penguins", k=1)) == ["p1"]  # converges from Chroma


WRITER = textwrap.dedent("""
    import sys, chromadb
    from tests.hybrid_fixtures import HashEmbedder
    host, port, name, tag, deleted_log = sys.argv[1:6]
    embedder = HashEmbedder()
    collection = chromadb.HttpClient(host=host, port=int(port)).get_collection(name, embedding_function=embedder)
    for batch in range(12):
        ids = [f"{tag}-{batch}-{i}" for i in range(3)]
        texts = [f"zebra{tag} stripes batch{batch} item{i}" for i in range(3)]
        collection.add(ids=ids, documents=texts, embeddings=embedder.embed_documents(texts))
        if batch % 3 == 2:
            collection.delete(ids=ids)
            with open(deleted_log, "a") as log:
                log.write("\\n".join(ids) + "\\n")
""")


@pytest.mark.server
def test_two_writer_processes_and_a_querier(server_collection, embedder, chroma_server, tmp_path):
    deleted_log = tmp_path / "deleted.txt"
    deleted_log.touch()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, chroma_server.host, str(chroma_server.port), server_collection.name,
             tag, str(deleted_log)],
            cwd=ROOT,
        )
        for tag in ("w1", "w2")
    ]
    search = ChromaHybridSearch(server_collection, embedder=embedder, check_interval=0, id_check_interval=0)
    queries = 0
    try:
        while any(w.poll() is None for w in writers) or queries < 5:
            deleted_before = set(deleted_log.read_text().split())
            hits = _ids(search.query("zebraw1 zebraw2 stripes", k=30))
            assert not deleted_before & set(hits), "a deleted document was returned"
            queries += 1
    finally:
        for writer in writers:
            writer.wait(timeout=120)
    assert [w.returncode for w in writers] == [0, 0]
    deleted = set(deleted_log.read_text().split())
    expected = set(ANIMALS) | {f"{tag}-{b}-{i}" for tag in ("w1", "w2") for b in range(12) for i in range(3)} - deleted
    assert set(server_collection.get(include=[])["ids"]) == expected  # no document lost
    search.refresh()
    assert set(search.index.ids()) == expected  # the index converged
    assert not deleted & set(_ids(search.query("zebraw1 zebraw2 stripes", k=100)))


@pytest.mark.parametrize("backend", ["sentence-transformers", "flag"])
def test_model_folder_deleted_after_loading(cross_encoder_path, tmp_path, backend):
    from rerank_ext_core.cross_encoder import CrossEncoderScorer

    folder = tmp_path / "model"
    shutil.copytree(cross_encoder_path, folder)
    scorer = CrossEncoderScorer(str(folder), backend=backend, device="cpu")
    before = scorer.score("cats", ["Cats eat meat.", "Stocks fell."])
    shutil.rmtree(folder)
    assert scorer.score("cats", ["Cats eat meat.", "Stocks fell."]) == pytest.approx(before)  # weights in memory
    with pytest.raises(ModelNotFoundError, match=str(folder)):
        CrossEncoderScorer(str(folder), backend=backend)


def test_colbert_model_folder_deleted_after_loading(colbert_path, tmp_path):
    from rerank_ext_core.colbert import ColBERTScorer

    folder = tmp_path / "colbert"
    shutil.copytree(colbert_path, folder)
    scorer = ColBERTScorer(str(folder), device="cpu", cache_megabytes=0)
    before = scorer.score("cats", ["Cats eat meat.", "Stocks fell."])
    shutil.rmtree(folder)
    assert scorer.score("cats", ["Cats eat meat.", "Stocks fell."]) == pytest.approx(before)
    with pytest.raises(ModelNotFoundError, match=str(folder)):
        ColBERTScorer(str(folder))
