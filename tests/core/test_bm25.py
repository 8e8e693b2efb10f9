from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from rerank_ext_core.bm25 import BM25Index, score_matrix
from rerank_ext_core.tokenization import Tokenizer

DOCS = {
    "d1": "the quick brown fox jumps over the lazy dog",
    "d2": "a fox is a small wild animal",
    "d3": "dogs and cats are pets",
    "d4": "quantum computing uses qubits",
}


@pytest.fixture
def index() -> BM25Index:
    idx = BM25Index()
    idx.upsert(list(DOCS), list(DOCS.values()))
    return idx


def test_ranking_matches_a_hand_check(index):
    results = index.search("fox", 10)
    assert [doc_id for doc_id, _ in results] == ["d2", "d1"]  # shorter doc ranks first
    assert all(score > 0 for _, score in results)


def test_scores_equal_bm25s_on_the_same_tokens(index):
    bm25s = pytest.importorskip("bm25s")
    tokenizer = Tokenizer()
    reference = bm25s.BM25()
    reference.index([tokenizer.tokenize(t) for t in DOCS.values()], show_progress=False)
    expected = reference.get_scores(tokenizer.tokenize("fox dogs"))
    ours = dict(index.search("fox dogs", 10))
    for position, doc_id in enumerate(DOCS):
        assert ours.get(doc_id, 0.0) == pytest.approx(float(expected[position]), abs=1e-5)


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire", "bm25l", "bm25+"])
def test_score_matrix_equals_bm25s_build_for_every_method(method):
    bm25s = pytest.importorskip("bm25s")
    rng = np.random.default_rng(7)
    n_terms = 40
    # Repeated terms, a term in almost every document (robertson's clamped idf), an empty document.
    documents = [list(rng.integers(0, n_terms, size=rng.integers(1, 30))) + [0] for _ in range(60)] + [[]]
    reference = bm25s.BM25(method=method)
    expected = reference.build_index_from_ids(list(range(n_terms)), documents, show_progress=False)
    lengths = np.asarray([len(d) for d in documents])
    matrix, nonoccurrence = score_matrix(
        np.concatenate([np.asarray(d, dtype=np.int64) for d in documents]), lengths, n_terms,
        method=method, k1=reference.k1, b=reference.b, delta=reference.delta,
    )
    np.testing.assert_array_equal(matrix["indptr"], expected["indptr"])
    np.testing.assert_array_equal(matrix["indices"], expected["indices"])
    np.testing.assert_allclose(matrix["data"], expected["data"], rtol=1e-6, atol=1e-7)
    assert matrix["num_docs"] == expected["num_docs"]
    if reference.nonoccurrence_array is None:
        assert nonoccurrence is None
    else:
        np.testing.assert_allclose(nonoccurrence, reference.nonoccurrence_array, rtol=1e-6)


def test_k_is_clamped_and_must_be_positive(index):
    assert len(index.search("fox", 1000)) == 2
    with pytest.raises(ValueError, match="k=0"):
        index.search("fox", 0)


def test_allowed_ids_filter(index):
    assert index.search("fox", 10, allowed_ids={"d1", "d3"}) == [("d1", pytest.approx(index.search("fox", 10)[1][1]))]
    assert index.search("fox", 10, allowed_ids=set()) == []
    assert index.search("fox", 10, allowed_ids={"nope"}) == []


def test_empty_query_and_unknown_words(index):
    assert index.search("", 5) == []
    assert index.search("the a", 5) == []  # stopwords only
    assert index.search("zzzz", 5) == []
    assert BM25Index().search("fox", 5) == []


def test_upsert_replaces_and_remove_masks_without_rebuild():
    index = BM25Index(rebuild_ratio=0.5)
    index.upsert(list(DOCS), list(DOCS.values()))
    index.search("fox", 5)
    builds = index.rebuilds
    index.remove(["d2"])
    assert [i for i, _ in index.search("fox", 5)] == ["d1"]
    assert index.rebuilds == builds  # a removal is masked, not rebuilt
    index.upsert(["d3"], ["a fox in the henhouse"])
    assert [i for i, _ in index.search("fox", 5)] == ["d3", "d1"]
    assert index.rebuilds == builds + 1
    assert "d2" not in index and len(index) == 3


def test_many_removals_trigger_a_rebuild():
    idx = BM25Index(rebuild_ratio=0.1)
    idx.upsert([f"d{i}" for i in range(20)], [f"fox number{i}" for i in range(20)])
    idx.search("fox", 5)
    builds = idx.rebuilds
    idx.remove([f"d{i}" for i in range(5)])
    results = idx.search("fox", 50)
    assert idx.rebuilds == builds + 1
    assert {i for i, _ in results} == {f"d{i}" for i in range(5, 20)}


def test_empty_and_non_text_documents_are_skipped_with_a_warning(caplog):
    idx = BM25Index()
    with caplog.at_level(logging.WARNING, logger="rerank_ext_core.bm25"):
        skipped = idx.upsert(["a", "b", "c", "d"], ["fox", "", None, 42])
    assert skipped == ["b", "c", "d"]
    assert len(idx) == 1
    assert sum("skipped" in r.message for r in caplog.records) == 3


def test_unchanged_text_is_not_retokenized(index, monkeypatch):
    def boom(text):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(index.tokenizer, "tokenize", boom)
    index.upsert(["d1"], [DOCS["d1"]])


def test_save_and_load_without_retokenizing(index, tmp_path, monkeypatch):
    path = tmp_path / "idx.npz"
    index.save(path, extra={"hello": 1})
    fresh = BM25Index()
    monkeypatch.setattr(fresh.tokenizer, "tokenize", lambda text: (_ for _ in ()).throw(AssertionError))
    monkeypatch.setattr(fresh.tokenizer, "tokenize", Tokenizer().tokenize)  # queries still tokenize
    assert fresh.load(path) == {"hello": 1}
    assert fresh.search("fox", 5) == index.search("fox", 5)
    assert sorted(fresh.ids()) == sorted(DOCS)
    assert BM25Index(Tokenizer(stemmer=None)).load(path) is None  # other tokenizer: ignored


def test_a_crash_while_saving_keeps_the_previous_file(index, tmp_path, monkeypatch):
    path = tmp_path / "idx.npz"
    index.save(path)
    index.upsert(["d9"], ["new fox"])

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    reloaded = BM25Index()
    assert reloaded.load(path) is not None
    assert "d9" not in reloaded and len(reloaded) == 4


def test_corrupt_file_is_ignored(tmp_path):
    path = tmp_path / "idx.npz"
    path.write_bytes(b"not a zip")
    assert BM25Index().load(path) is None


def test_concurrent_writes_and_searches():
    idx = BM25Index()
    idx.upsert([f"d{i}" for i in range(50)], [f"fox {i}" for i in range(50)])
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                for doc_id, _ in idx.search("fox", 10):
                    assert doc_id.startswith(("d", "n"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(100):
        idx.upsert([f"n{i}"], [f"fox new {i}"])
        if i % 10 == 0:
            idx.remove([f"d{i // 10}"])
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert len(idx) == 140


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "bogus"}, "method='bogus' is not supported"),
        ({"k1": -3}, "k1=-3 is invalid"),
        ({"b": 1.5}, "b=1.5 is invalid"),
        ({"rebuild_ratio": "x"}, "rebuild_ratio='x' is invalid"),
    ],
)
def test_bad_bm25_parameters_fail_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BM25Index(**kwargs)


def test_refresh_matrix_builds_off_the_lock_and_masks_what_changed_meanwhile(monkeypatch):
    index = BM25Index(rebuild_ratio=10.0)  # only staleness triggers a rebuild here, not masked rows
    index.upsert(["a", "b", "c"], ["red apples", "green pears", "yellow bananas"])
    index.search("apples", 1)  # the first matrix
    index.upsert(["d"], ["purple grapes"])
    index.defer_rebuilds = True
    builds = index.rebuilds
    assert index.search("grapes", 3) == []  # deferred: the stale matrix is used, no rebuild on the query path
    assert index.rebuilds == builds
    original = BM25Index._build

    def build_while_others_write(self, tokens, vocab_size):
        matrix = original(self, tokens, vocab_size)
        self.remove(["a"])  # changes that land while the new matrix is being built
        self.upsert(["b"], ["blue plums"])
        self.upsert(["e"], ["orange mangoes"])
        return matrix

    monkeypatch.setattr(BM25Index, "_build", build_while_others_write)
    assert index.refresh_matrix()
    monkeypatch.setattr(BM25Index, "_build", original)
    assert [doc for doc, _ in index.search("grapes", 3)] == ["d"]  # the build's own addition is in
    assert index.search("apples", 3) == []  # removed during the build: masked
    assert index.search("pears", 3) == []  # replaced during the build: the old text is masked
    assert index.refresh_matrix()  # added during the build: still stale, so the next call rebuilds
    assert [doc for doc, _ in index.search("plums", 3)] == ["b"]
    assert [doc for doc, _ in index.search("mangoes", 3)] == ["e"]
    assert not index.refresh_matrix()  # nothing left to do
