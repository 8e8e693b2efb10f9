"""A damaged or foreign saved BM25 index is rebuilt from Chroma with a warning, never a crash."""

from __future__ import annotations

import io
import json
import logging
import zipfile

import chromadb
import numpy as np
import pytest

from rerank_ext_core import ChromaHybridSearch
from rerank_ext_core.bm25 import BM25Index
from tests.hybrid_fixtures import fill, unique_name


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zero_bytes(path):
    path.write_bytes(b"")


def _not_a_zip(path):
    path.write_text("this is not an index", encoding="utf-8")


def _rewrite(path, **changes):
    """Re-save the archive with some arrays replaced (a valid zip with wrong contents)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    arrays.update(changes)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def _older_format(path):
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
    header["format"] = 0
    _rewrite(path, header=np.asarray(json.dumps(header)))


def _other_collection(path):
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
    header["extra"]["collection_id"] = "00000000-0000-0000-0000-000000000000"
    _rewrite(path, header=np.asarray(json.dumps(header)))


def _inconsistent_arrays(path):
    with np.load(path, allow_pickle=False) as data:
        lengths = data["lengths"].copy()
    lengths[0] += 1000
    _rewrite(path, lengths=lengths)


def _missing_array(path):
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist() if name != "vocab.npy"}
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)


DAMAGE = {
    "truncated": _truncate,
    "zero bytes": _zero_bytes,
    "not a zip": _not_a_zip,
    "older format": _older_format,
    "another collection": _other_collection,
    "inconsistent arrays": _inconsistent_arrays,
    "missing array": _missing_array,
}


@pytest.fixture
def saved(tmp_path, embedder):
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    collection = client.create_collection(unique_name(), embedding_function=embedder)
    fill(collection, embedder)
    first = ChromaHybridSearch(collection, embedder=embedder)
    expected = [hit.id for hit in first.query("dogs walks", k=3)]
    assert first.index_path.exists()
    return collection, first.index_path, expected


def _ids(hits):
    return [hit.id for hit in hits]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_index_is_rebuilt_with_a_warning(saved, embedder, damage, caplog):
    collection, path, expected = saved
    DAMAGE[damage](path)
    reopened = ChromaHybridSearch(collection, embedder=embedder)
    with caplog.at_level(logging.WARNING):
        assert _ids(reopened.query("dogs walks", k=3)) == expected
    assert any("rebuilt" in record.getMessage() for record in caplog.records), damage
    assert len(reopened.index) == collection.count()  # nothing foreign, nothing lost
    healed = BM25Index()
    assert healed.load(path, expect={"collection_id": str(collection.id)}) is not None  # saved anew, valid
    assert sorted(healed.ids()) == sorted(collection.get(include=[])["ids"])


def test_another_collections_index_leaves_nothing_behind(saved, embedder):
    collection, path, _ = saved
    index = BM25Index()
    index.upsert(["keep"], ["kept text"])
    _other_collection(path)
    assert index.load(path, expect={"collection_id": str(collection.id)}) is None
    assert index.ids() == ["keep"]  # contents unchanged: nothing of the other index leaks in


def test_damage_while_a_query_is_running(saved, embedder, monkeypatch, caplog):
    """The file is truncated by another process in the middle of the query that reads it."""
    collection, path, expected = saved
    real_load = np.load
    damaged: list[str] = []

    def load_after_damage(file, *args, **kwargs):
        if not damaged:
            damaged.append(str(file))
            _truncate(path)
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(np, "load", load_after_damage)
    reopened = ChromaHybridSearch(collection, embedder=embedder)
    with caplog.at_level(logging.WARNING):
        assert _ids(reopened.query("dogs walks", k=3)) == expected
    assert damaged == [str(path)]
    assert any("rebuilt" in record.getMessage() for record in caplog.records)


def test_a_live_instance_survives_damage_under_it_and_its_next_write_heals_the_file(saved, embedder):
    collection, path, expected = saved
    live = ChromaHybridSearch(collection, embedder=embedder)
    assert _ids(live.query("dogs walks", k=3)) == expected
    _not_a_zip(path)
    assert _ids(live.query("dogs walks", k=3)) == expected
    live.add(["p1"], ["Penguins cannot fly."])
    assert BM25Index().load(path, expect={"collection_id": str(collection.id)}) is not None
    assert _ids(ChromaHybridSearch(collection, embedder=embedder).query("penguins", k=1)) == ["p1"]
