"""Generated hostile inputs against every public entry point.

The property, everywhere: a call either returns a valid result (documented lengths and order,
finite scores or the documented values for blank texts, nothing stored lost) or raises
``ValueError`` / ``TypeError`` whose message names the argument. Any other exception type, a
silently coerced non-string query, or a wrong answer fails the test.

Small example counts by default (CI: about a minute, derandomized); a larger, random run:
``RERANK_EXT_HYPOTHESIS=thorough pytest tests/test_hostile_inputs.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rerank_ext_core.fusion import fuse
from rerank_ext_core.rerank import rerank
from tests.conftest import KeywordScorer
from tests.hybrid_fixtures import ANIMALS

_PROFILES = {
    "ci": settings(max_examples=40, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck)),
    "thorough": settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck)),
}
HOSTILE_SETTINGS = _PROFILES[os.environ.get("RERANK_EXT_HYPOTHESIS", "ci")]

ODD_TEXTS = st.sampled_from([
    "", " ", "\n\t ", "🦜🦜 parrots 🦜", "猫は魚を食べる。Cats eat fish.", "Ünïcödé ñ", "مرحبا بالعالم",
    "a\u200bb\u202e", "\x00nul\x00", "x" * 5000, "cats " * 2000, "Cats are carnivores.",
])
TEXTS = ODD_TEXTS | st.text(max_size=40)
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 2**31, 2**63, float("nan"), float("inf"), -float("inf"), 1e308]),
)
JUNK = st.one_of(
    st.none(), st.booleans(), NUMBERS, st.binary(max_size=8), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.just(object()), st.just(("a", "b")),
)
HOSTILE = JUNK | TEXTS


def refused_or_valid(call: Callable[[], Any], argument: str, check: Callable[[Any], None]) -> None:
    """The property: a ValueError/TypeError naming ``argument``, or a result ``check`` accepts."""
    try:
        result = call()
    except (ValueError, TypeError) as exc:
        names = {argument.lower(), argument.lower().replace("_", " ")}
        assert any(name in str(exc).lower() for name in names), f"{type(exc).__name__} does not name {argument!r}: {exc}"
        return
    check(result)


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _sorted_best_first(scores: list[float]) -> bool:
    return all(a >= b for a, b in zip(scores, scores[1:]))


# ----------------------------------------------------------------------------- the rerank loop
@HOSTILE_SETTINGS
@given(query=HOSTILE, texts=st.lists(HOSTILE, max_size=6) | JUNK, top_n=st.none() | HOSTILE,
       threshold=st.none() | HOSTILE)
def test_rerank_loop(query, texts, top_n, threshold):
    for argument, call in (
        ("query", lambda: rerank(KeywordScorer(), query, ["cats"])),
        ("texts", lambda: rerank(KeywordScorer(), "cats", texts)),
        ("top_n", lambda: rerank(KeywordScorer(), "cats", ["cats", "dogs"], top_n=top_n)),
        ("score_threshold", lambda: rerank(KeywordScorer(), "cats", ["cats", "dogs"], score_threshold=threshold)),
    ):
        def check(ranked, argument=argument):
            if argument == "query":
                assert isinstance(query, str)
                assert len(ranked) == (0 if not query.strip() else 1)
            if argument == "texts":
                assert isinstance(texts, (list, tuple)) and all(isinstance(t, str) for t in texts)
                assert sorted(r.index for r in ranked) == list(range(len(texts)))
            if argument == "top_n":
                assert top_n is None or (_is_positive_int(top_n) and len(ranked) == min(top_n, 2))
            if argument == "score_threshold":
                assert threshold is None or (isinstance(threshold, (int, float)) and math.isfinite(threshold))
                assert all(r.score >= threshold for r in ranked) if threshold is not None else len(ranked) == 2
            assert _sorted_best_first([r.score for r in ranked])

        refused_or_valid(call, argument, check)


# ------------------------------------------------------------------- rerankers, both frameworks
@pytest.fixture(scope="module")
def rerankers(cross_encoder_path, colbert_path):
    import langchain_rerank_ext as lc
    import llamaindex_rerank_ext as li

    return {
        ("langchain", "cross-encoder"): lc.CrossEncoderReranker(model=cross_encoder_path, device="cpu", top_n=3),
        ("langchain", "colbert"): lc.ColBERTReranker(model=colbert_path, device="cpu"),
        ("llamaindex", "cross-encoder"): li.CrossEncoderReranker(model=cross_encoder_path, device="cpu", top_n=3),
        ("llamaindex", "colbert"): li.ColBERTReranker(model=colbert_path, device="cpu"),
    }


def _call_reranker(reranker, framework: str, items: Any, query: Any, asynchronous: bool) -> Any:
    if framework == "langchain":
        if asynchronous:
            return asyncio.run(reranker.acompress_documents(items, query))
        return reranker.compress_documents(items, query)
    if asynchronous:
        return asyncio.run(reranker.apostprocess_nodes(items, query_str=query))
    return reranker.postprocess_nodes(items, query_str=query)


def _wrap(framework: str, texts: list[Any]) -> list[Any]:
    if framework == "langchain":
        from langchain_core.documents import Document

        return [Document(page_content=t, id=f"d{i}") for i, t in enumerate(texts)]
    from llama_index.core.schema import NodeWithScore, TextNode

    return [NodeWithScore(node=TextNode(text=t, id_=f"d{i}"), score=0.5) for i, t in enumerate(texts)]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("kind", ["cross-encoder", "colbert"])
@pytest.mark.parametrize("framework", ["langchain", "llamaindex"])
def test_rerankers_in_both_frameworks(rerankers, framework, kind, asynchronous):
    reranker = rerankers[(framework, kind)]

    @HOSTILE_SETTINGS
    @given(texts=st.lists(TEXTS, max_size=5), junk_items=st.lists(HOSTILE, min_size=1, max_size=3) | JUNK,
           query=HOSTILE)
    def run(texts, junk_items, query):
        items = _wrap(framework, texts)

        def check(out):
            assert isinstance(query, str), f"a {type(query).__name__} query was accepted"
            expected = 0 if not query.strip() else min(len(items), reranker.top_n or len(items))
            assert len(out) == expected
            scores = [d.metadata["relevance_score"] for d in out] if framework == "langchain" else [n.score for n in out]
            assert all(math.isfinite(s) for s in scores) and _sorted_best_first(scores)
            out_ids = [d.id for d in out] if framework == "langchain" else [n.node.node_id for n in out]
            assert len(set(out_ids)) == len(out_ids) and set(out_ids) <= {f"d{i}" for i in range(len(items))}

        refused_or_valid(lambda: _call_reranker(reranker, framework, items, query, asynchronous), "query", check)
        name = "documents" if framework == "langchain" else "nodes"
        refused_or_valid(
            lambda: _call_reranker(reranker, framework, junk_items, "cats", asynchronous), name,
            lambda out: out == [] and junk_items in ([], ()) or pytest.fail(f"{name}={junk_items!r} was accepted"),
        )

    run()


RERANKER_OPTIONS = [
    "top_n", "score_threshold", "batch_size", "max_length", "device", "backend", "long_documents",
    "passage_overlap", "normalize", "query_instruction", "use_fp16", "keep_retrieval_score",
]


@pytest.mark.parametrize("framework", ["langchain", "llamaindex"])
def test_cross_encoder_reranker_options(cross_encoder_path, framework):
    import langchain_rerank_ext as lc
    import llamaindex_rerank_ext as li

    reranker_class = (lc if framework == "langchain" else li).CrossEncoderReranker

    @HOSTILE_SETTINGS
    @given(option=st.sampled_from(RERANKER_OPTIONS), value=HOSTILE)
    def run(option, value):
        def check(reranker):
            # Accepted: the value must be one the option documents, and the reranker must work.
            texts = ["Cats are carnivores.", "", "Stock markets fell."]
            out = _call_reranker(reranker, framework, _wrap(framework, texts), "what do cats eat", False)
            if reranker.score_threshold is None:
                assert len(out) == min(3, reranker.top_n or 3)

        refused_or_valid(lambda: reranker_class(model=cross_encoder_path, **{option: value}), option, check)

    run()


# --------------------------------------------------------------------------------------- fusion
SCORE_LISTS = st.lists(st.tuples(st.text(max_size=3) | JUNK, NUMBERS), max_size=5) | JUNK


@HOSTILE_SETTINGS
@given(dense=SCORE_LISTS, mode=HOSTILE, weights=st.none() | HOSTILE
       | st.dictionaries(st.sampled_from(["dense", "sparse", "x"]), HOSTILE, max_size=2), rrf_k=HOSTILE)
def test_fusion(dense, mode, weights, rrf_k):
    good = [("a", 0.5), ("b", 0.25)]
    for argument, call in (
        ("dense", lambda: fuse({"dense": dense, "sparse": good})),
        ("mode", lambda: fuse({"dense": good, "sparse": good}, mode=mode)),
        ("weight", lambda: fuse({"dense": good, "sparse": good}, weights=weights)),
        ("rrf_k", lambda: fuse({"dense": good, "sparse": good}, mode="rrf", rrf_k=rrf_k)),
    ):
        def check(fused):
            assert all(math.isfinite(r.score) for r in fused)
            assert _sorted_best_first([r.score for r in fused])
            assert len({r.id for r in fused}) == len(fused)

        refused_or_valid(call, argument, check)


# --------------------------------------------------------------------------- hybrid retrievers
@pytest.fixture(scope="module")
def search():
    chromadb = pytest.importorskip("chromadb")
    from rerank_ext_core.hybrid import ChromaHybridSearch
    from tests.hybrid_fixtures import HashEmbedder, fill

    embedder = HashEmbedder()
    collection = chromadb.EphemeralClient().create_collection(f"hostile_{uuid.uuid4().hex[:8]}", embedding_function=embedder)
    fill(collection, embedder)
    return ChromaHybridSearch(collection, embedder=embedder, check_interval=0)


FILTERS = st.none() | JUNK | st.sampled_from([
    {"topic": "animals"}, {"topic": {"$in": ["food", "animals"]}}, {"$and": []}, {"year": {"$gt": "x"}},
    {"$contains": "dogs"}, {}, {"nope": None}, {"$or": [{"topic": "food"}]},
])


@pytest.mark.parametrize("framework", ["langchain", "llamaindex", "core"])
def test_hybrid_retrievers(search, framework):
    import langchain_rerank_ext as lc
    import llamaindex_rerank_ext as li

    options = {"fusion": HOSTILE, "weights": HOSTILE, "rrf_k": HOSTILE, "where": FILTERS, "where_document": FILTERS}

    def build(**kwargs):
        if framework == "langchain":
            return lc.ChromaHybridRetriever(search=search, **kwargs)
        if framework == "llamaindex":
            top_k = kwargs.pop("k", 4)
            return li.ChromaHybridRetriever(search, similarity_top_k=top_k, **kwargs)
        return kwargs

    def retrieve(retriever, query, **kwargs):
        if framework == "langchain":
            return retriever.invoke(query, **kwargs)
        if framework == "llamaindex":
            return retriever.retrieve(query)
        return search.query(query, **{**retriever, **kwargs})

    @HOSTILE_SETTINGS
    @given(option=st.sampled_from([*options, "k"]), data=st.data(), query=HOSTILE, k=HOSTILE)
    def run(option, data, query, k):
        value = data.draw(options.get(option, HOSTILE))

        def check_hits(hits, query="dogs"):
            assert isinstance(query, str), f"a {type(query).__name__} query was accepted"
            assert len(hits) <= len(ANIMALS)
            ids = [getattr(h, "id", None) or getattr(getattr(h, "node", None), "node_id", None) for h in hits]
            assert len(set(ids)) == len(ids) and set(ids) <= set(search.collection.get(include=[])["ids"])

        def check_built(retriever):
            refused_or_valid(lambda: retrieve(retriever, "dogs and cats"), option, check_hits)

        refused_or_valid(lambda: build(**{option: value}), option, check_built)
        refused_or_valid(lambda: retrieve(build(), query), "query", lambda hits: check_hits(hits, query))
        if framework != "llamaindex":  # (LlamaIndex takes k only at construction: option "k" above)
            refused_or_valid(lambda: retrieve(build(), "dogs", k=k), "k", lambda hits: (
                k is None or _is_positive_int(k) or pytest.fail(f"k={k!r} accepted"), check_hits(hits)))

    run()


# ------------------------------------------------------------------------- writes through us
IDS = st.lists(st.sampled_from(["a1", "n1", "n2", "", " "]) | JUNK | st.text(max_size=4), max_size=4) | JUNK
DOCUMENTS = st.none() | st.lists(TEXTS | JUNK, max_size=4) | JUNK
METADATAS = st.none() | st.lists(st.none() | st.sampled_from([{"topic": "x"}, {"nested": {"a": 1}}, {"n": float("nan")},
                                                              {"": 1}, {"list": [1, 2]}]) | JUNK, max_size=4) | JUNK


def test_writes_never_lose_or_corrupt_data(embedder, tmp_path):
    chromadb = pytest.importorskip("chromadb")
    from rerank_ext_core.hybrid import ChromaHybridSearch
    from tests.hybrid_fixtures import fill

    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    collection = client.create_collection("writes", embedding_function=embedder)
    fill(collection, embedder)
    search = ChromaHybridSearch(collection, embedder=embedder, check_interval=0, id_check_interval=0)
    search.query("dogs", k=1)

    @HOSTILE_SETTINGS
    @given(method=st.sampled_from(["add", "upsert", "update", "delete"]), ids=IDS, documents=DOCUMENTS,
           metadatas=METADATAS)
    def run(method, ids, documents, metadatas):
        before = dict(zip(*(lambda r: (r["ids"], r["documents"]))(collection.get(include=["documents"]))))

        def call():
            if method == "delete":
                return search.delete(ids)
            return getattr(search, method)(ids, documents, metadatas)

        def check(_):
            assert isinstance(ids, (list, tuple)) and all(isinstance(i, str) and i.strip() for i in ids)

        argument = "ids"
        try:
            call()
        except (ValueError, TypeError) as exc:
            message = str(exc).lower()
            assert any(name in message for name in ("ids", "documents", "metadatas", "metadata")), exc
            after = dict(zip(*(lambda r: (r["ids"], r["documents"]))(collection.get(include=["documents"]))))
            assert after == before, "a refused write changed the collection"
        else:
            check(None)
        # Chroma and the BM25 side agree, and the original records are intact unless we changed them.
        stored = collection.get(include=["documents"])
        assert set(search.index.ids()) | search.mirror._state.skipped_ids == set(stored["ids"]), argument
        for doc_id, text in zip(stored["ids"], stored["documents"]):
            if doc_id in search.index and isinstance(text, str):
                from rerank_ext_core.bm25 import content_hash

                assert search.index.hash_of(doc_id) == content_hash(text)
        named = {i for i in ids if isinstance(i, str)} if isinstance(ids, (list, tuple)) else set()
        assert set(before) - named <= set(stored["ids"]), "a record this call did not name was lost"

    run()


# ------------------------------------------------------------------------------- command lines
def _refused_by_the_command_line(argv: list[str]) -> None:
    """Exit code 2 (bad input) or 3 (missing model or package) with a message, never a traceback."""
    from rerank_ext_core import cli

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exit_:  # argparse refusing an option
            code = exit_.code
    assert code in (2, 3), (argv, code, stderr.getvalue())
    assert "Traceback" not in stderr.getvalue()
    assert stderr.getvalue().strip(), "refused without saying why"


CLI_ARGUMENTS = st.lists(
    st.sampled_from(["--top-n", "--k", "--max-queries", "--batch-size", "--fusion", "--rerank-from",
                     "--reranker", "--model", "-o", "--colbert-cache-mb", "--cache-dir"])
    | st.sampled_from(["0", "-3", "nan", "inf", "1e309", "🦜", "", "x" * 300, "colbert:", "cross-encoder:/nope",
                       "rrf,borda", "99999999999999999999"]) | st.text(max_size=8),
    max_size=6,
)


@HOSTILE_SETTINGS
@given(arguments=CLI_ARGUMENTS)
def test_eval_command_line(arguments, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile-eval")
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "text": "cats"}\n', encoding="utf-8")
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "cats"}\n', encoding="utf-8")
    (folder / "qrels.tsv").write_text("q1\td1\t1\n", encoding="utf-8")
    _refused_by_the_command_line(["eval", str(folder / "missing-folder"), "-o", str(folder / "out"), *arguments])


FINETUNE_ARGUMENTS = st.lists(
    st.sampled_from(["--beir", "--flag-jsonl", "--chroma-queries", "--collection", "--kind", "--loss",
                     "--train-group-size", "--negative-window", "--negatives-from", "--epochs", "--max-steps",
                     "--batch-size", "--learning-rate", "--dev-fraction", "--precision", "--device", "--resume"])
    | st.sampled_from(["0", "1", "-3", "nan", "inf", "1e309", "🦜", "", "x" * 300, "colbert", "bce", "listmle",
                       "hybrid", "random", "/nope"]) | st.text(max_size=8),
    max_size=6,
)


@HOSTILE_SETTINGS
@given(arguments=FINETUNE_ARGUMENTS)
def test_finetune_command_line(arguments, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile-finetune")
    _refused_by_the_command_line(["finetune", "--base-model", str(folder / "no-such-model"), "-o", str(folder / "out"), *arguments])
    assert not (folder / "out").exists(), "a refused run left an output folder"
