from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from rerank_ext_core.hybrid import ChromaHybridSearch
from tests.hybrid_fixtures import ANIMALS, fill, unique_name

chromadb = pytest.importorskip("chromadb")


@pytest.fixture
def search(ephemeral_collection, embedder) -> ChromaHybridSearch:
    fill(ephemeral_collection, embedder)
    return ChromaHybridSearch(ephemeral_collection, embedder=embedder, check_interval=0, id_check_interval=0)


def ids(hits):
    return [h.id for h in hits]


def test_query_returns_both_sides_scores_and_copies_metadata(search):
    hits = search.query("dogs enjoy walks", k=3)
    assert hits[0].id == "a2"
    top = hits[0]
    assert top.dense_rank == 1 and top.sparse_rank == 1
    assert top.dense_score is not None and top.sparse_score is not None and top.sparse_score > 0
    assert top.fusion == "dist_based_score"
    assert top.document == ANIMALS["a2"][0]
    assert top.metadata == ANIMALS["a2"][1]
    top.metadata["topic"] = "changed"
    assert search.query("dogs enjoy walks", k=1)[0].metadata["topic"] == "animals"


@pytest.mark.parametrize("mode", ["rrf", "relative_score", "dist_based_score"])
def test_every_mode_finds_the_obvious_document(search, mode):
    assert search.query("espresso coffee beans", k=2, fusion=mode)[0].id == "f2"


def test_k_larger_than_the_collection_is_clamped(search):
    assert len(search.query("dogs", k=1000)) == len(ANIMALS)


def test_weights_turn_a_side_off_but_keep_its_scores_visible(search):
    hits = search.query("memory safety garbage", k=3, weights={"dense": 0, "sparse": 1})
    assert hits[0].id == "s2"
    assert hits[0].dense_score is not None


def test_filters_apply_to_both_sides(search):
    hits = search.query("dogs", k=10, where={"topic": "software"})
    assert hits and all(h.metadata["topic"] == "software" for h in hits)
    assert all(h.sparse_score is None for h in hits)  # the only 'dogs' document is filtered out
    hits = search.query("dogs cats", k=10, where={"year": {"$gte": 2021}})
    assert "a1" not in ids(hits) and "a2" in ids(hits)
    hits = search.query("dogs cats", k=10, where_document={"$contains": "Cats"})
    assert ids(hits) == ["a1"]
    assert search.query("dogs", k=5, where={"topic": "nothing"}) == []


def test_bad_input(search):
    assert search.query("", k=3) == []
    assert search.query("   ", k=3) == []
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=f"k={k!r}"):
            search.query("dogs", k=k)
    with pytest.raises(ValueError, match="Unknown fusion mode 'best'"):
        search.query("dogs", fusion="best")
    with pytest.raises(ValueError, match="negative"):
        search.query("dogs", weights={"dense": -1, "sparse": 1})
    with pytest.raises(ValueError, match="all zero"):
        search.query("dogs", weights={"dense": 0, "sparse": 0})
    with pytest.raises(TypeError, match="query must be a string"):
        search.query(None)
    with pytest.raises(TypeError, match="unexpected keyword"):
        search.query("dogs", top_k=3)
    with pytest.raises(ValueError, match="Unknown fusion mode"):
        ChromaHybridSearch(search.collection, fusion="nope")


def test_empty_collection(ephemeral_collection, embedder):
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder)
    assert search.query("anything", k=5) == []


def test_our_writes_reach_both_sides(search, embedder):
    search.add(["n1"], ["Hedgehogs eat insects and snails."], [{"topic": "animals"}])
    assert search.query("hedgehogs snails", k=1)[0].id == "n1"
    assert search.query("hedgehogs snails", k=1)[0].sparse_rank == 1
    search.update(["n1"], documents=["Otters swim in rivers."])
    assert search.query("otters rivers", k=1)[0].id == "n1"
    assert all(h.sparse_score is None for h in search.query("hedgehogs snails", k=10))
    search.delete(["n1"])
    assert "n1" not in ids(search.query("otters rivers", k=10))
    search.delete(where={"topic": "food"})
    assert not {"f1", "f2"} & set(ids(search.query("coffee bread", k=10)))
    assert search.collection.count() == len(ANIMALS) - 2


def test_add_of_an_existing_id_keeps_the_stored_text_on_both_sides(search):
    stored = search.collection.get(ids=["a1"])["documents"][0]
    search.query("warm up", k=1)  # the BM25 side is built
    search.add(["a1", "n2"], ["Zebras gallop across the savanna.", "Beavers build dams."])
    assert search.collection.get(ids=["a1"])["documents"][0] == stored
    assert all(h.id != "a1" or h.sparse_score is None for h in search.query("zebras savanna gallop", k=10))
    assert search.query("beavers dams", k=1)[0].id == "n2"
    search.upsert(["a1"], ["Zebras gallop across the savanna."])
    assert search.query("zebras savanna gallop", k=1)[0].id == "a1"


def test_writes_by_others_are_noticed_at_query_time(search, embedder):
    collection = search.collection
    search.query("dogs", k=1)
    collection.add(ids=["x1"], documents=["Wombats produce cube-shaped droppings."],
                   embeddings=embedder.embed_documents(["Wombats"]))
    hit = search.query("wombats droppings", k=1)[0]
    assert hit.id == "x1" and hit.sparse_rank == 1
    collection.delete(ids=["a2"])
    assert "a2" not in ids(search.query("dogs walks", k=10))
    # same count, different ids: caught by the id check
    collection.delete(ids=["x1"])
    collection.add(ids=["x2"], documents=["Axolotls regrow limbs."], embeddings=embedder.embed_documents(["x"]))
    assert search.query("axolotls limbs", k=1)[0].sparse_rank == 1
    # text changed in place: noticed when the document shows up, and by refresh()
    collection.update(ids=["x2"], documents=["Narwhals have a long tusk."])
    search.refresh()
    assert search.query("narwhals tusk", k=1)[0].sparse_rank == 1


def test_a_deleted_document_is_never_returned_even_between_checks(ephemeral_collection, embedder):
    fill(ephemeral_collection, embedder)
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, id_check_interval=3600)
    assert search.query("parrots speech", k=1)[0].id == "a3"
    ephemeral_collection.delete(ids=["a3"])
    ephemeral_collection.add(ids=["z"], documents=["unrelated"], embeddings=embedder.embed_documents(["u"]))
    # count unchanged and the id check is not due: the sparse side still lists a3
    hits = search.query("parrots speech", k=10)
    assert "a3" not in ids(hits)
    assert "a3" not in search.index


def test_documents_without_text_are_skipped_with_a_warning(ephemeral_collection, embedder, caplog):
    fill(ephemeral_collection, embedder)
    ephemeral_collection.add(ids=["e1", "e2"], embeddings=embedder.embed_documents(["dogs", "dogs"]),
                             documents=["", None] if False else ["", "  "])
    ephemeral_collection.add(ids=["e3"], embeddings=embedder.embed_documents(["dogs"]))
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, check_interval=0, id_check_interval=0)
    with caplog.at_level(logging.WARNING, logger="rerank_ext_core.bm25"):
        hits = search.query("dogs", k=20)
    assert {"e1", "e2", "e3"} <= set(ids(hits))  # still found by the dense side
    assert sum("skipped" in r.message for r in caplog.records) == 3
    builds = search.index.rebuilds
    search.query("dogs", k=3)  # skipped ids are known: no resync loop
    assert search.index.rebuilds == builds


def test_persistent_client_saves_beside_the_data_and_reloads_without_tokenizing(tmp_path, embedder, monkeypatch):
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    collection = client.create_collection(unique_name(), embedding_function=embedder)
    fill(collection, embedder)
    search = ChromaHybridSearch(collection, embedder=embedder)
    expected = ids(search.query("dogs walks", k=3))
    saved = tmp_path / "db" / "rerank_ext_bm25" / f"{collection.id}.npz"
    assert search.index_path == saved and saved.exists()

    reopened = ChromaHybridSearch(collection, embedder=embedder)
    tokenized: list[str] = []
    original = reopened.index.tokenizer.tokenize
    monkeypatch.setattr(reopened.index.tokenizer, "tokenize", lambda t: tokenized.append(t) or original(t))
    assert ids(reopened.query("dogs walks", k=3)) == expected
    assert tokenized == ["dogs walks"]  # only the query

    collection.add(ids=["p1"], documents=["Penguins cannot fly."], embeddings=embedder.embed_documents(["p"]))
    third = ChromaHybridSearch(collection, embedder=embedder)
    monkeypatch.setattr(third.index.tokenizer, "tokenize", lambda t: tokenized.append(t) or original(t))
    tokenized.clear()
    assert third.query("penguins", k=1)[0].id == "p1"
    assert sorted(tokenized) == ["Penguins cannot fly.", "penguins"]  # only the new document


def test_given_folder_and_no_persistence(ephemeral_collection, embedder, tmp_path):
    fill(ephemeral_collection, embedder)
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, index_dir=tmp_path / "bm25")
    search.query("dogs", k=1)
    assert (tmp_path / "bm25" / f"{ephemeral_collection.id}.npz").exists()
    assert ChromaHybridSearch(ephemeral_collection, embedder=embedder).index_path is None


def test_eight_query_threads_while_another_adds(search, embedder):
    collection = search.collection
    errors: list[BaseException] = []
    returned: set[str] = set()
    stop = threading.Event()
    lock = threading.Lock()

    def query_loop():
        try:
            while not stop.is_set():
                hits = search.query("animals dogs fox number", k=5)
                with lock:
                    returned.update(ids(hits))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=query_loop) for _ in range(8)]
    for t in threads:
        t.start()
    for i in range(40):
        search.add([f"t{i}"], [f"fox number {i} runs with dogs"])
        if i % 10 == 9:
            collection.delete(ids=[f"t{i - 5}"])  # someone else deletes
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    existing = set(collection.get(include=[])["ids"])
    deleted = {f"t{i - 5}" for i in range(40) if i % 10 == 9}
    final = set(ids(search.query("fox number dogs", k=100)))
    assert final <= existing and not final & deleted
    assert returned  # the threads did run queries


def test_aquery_runs_dense_and_sparse_concurrently(search):
    delay = 0.3
    original_sparse = search._sparse
    original_embed = search.embedder.embed_query

    def slow_sparse(plan):
        time.sleep(delay)
        return original_sparse(plan)

    def slow_embed(text):
        time.sleep(delay)
        return original_embed(text)

    search._sparse = slow_sparse
    search.embedder.embed_query = slow_embed

    async def run():
        start = time.perf_counter()
        hits = await search.aquery("dogs walks", k=2)
        return hits, time.perf_counter() - start

    hits, elapsed = asyncio.run(run())
    assert hits[0].id == "a2" and hits[0].sparse_rank == 1
    assert elapsed < 2 * delay  # sequential would take at least 0.6 s
    assert ids(asyncio.run(search.aquery("", k=2))) == []


def test_autosave_off_saves_only_on_request(ephemeral_collection, embedder, tmp_path):
    fill(ephemeral_collection, embedder)
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, index_dir=tmp_path, autosave=False)
    search.add(["n1"], ["Hedgehogs eat snails."])
    assert search.query("hedgehogs", k=1)[0].id == "n1"
    assert list(tmp_path.iterdir()) == []
    path = search.save()
    assert path is not None and path.exists()
    reloaded = ChromaHybridSearch(ephemeral_collection, embedder=embedder, index_dir=tmp_path, background_refresh=False)
    reloaded.mirror.sync()
    assert "n1" in reloaded.index and reloaded.index.rebuilds == 0
    with pytest.raises(ValueError, match="ids=\\[...\\] or where"):
        search.delete()


def test_check_interval_throttles_the_count_and_refresh_forces(ephemeral_collection, embedder):
    fill(ephemeral_collection, embedder)
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, check_interval=3600)
    search.query("dogs", k=1)
    ephemeral_collection.add(ids=["x"], documents=["Quokkas smile."], embeddings=embedder.embed_documents(["q"]))
    assert search.query("quokkas", k=1)[0].sparse_rank is None  # not checked yet
    search.refresh()
    assert search.query("quokkas", k=1)[0].sparse_rank == 1
    with pytest.raises(ValueError, match="check_interval=-1"):
        ChromaHybridSearch(ephemeral_collection, check_interval=-1)
