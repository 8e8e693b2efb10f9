import asyncio
import threading
import time

import numpy as np
import pytest

from rerank_ext_core import ModelNotFoundError
from rerank_ext_core.cross_encoder import CrossEncoderScorer, sigmoid

QUERY = "what do cats eat?"
DOCS = [
    "Cats are obligate carnivores and eat meat.",
    "The stock market fell sharply on Monday.",
    "",
    "   ",
    "猫是食肉动物，主要吃肉。",
    "Dogs eat a varied diet.",
]


@pytest.fixture(scope="module")
def st_scorer(cross_encoder_path):
    return CrossEncoderScorer(cross_encoder_path, backend="sentence-transformers", device="cpu")


@pytest.fixture(scope="module")
def flag_scorer(cross_encoder_path):
    return CrossEncoderScorer(cross_encoder_path, backend="flag", device="cpu")


def test_sentence_transformers_backend_equals_cross_encoder_predict(st_scorer, cross_encoder_path):
    from sentence_transformers import CrossEncoder

    reference = CrossEncoder(cross_encoder_path, device="cpu").predict([(QUERY, d) for d in DOCS])
    np.testing.assert_allclose(st_scorer.score(QUERY, DOCS), reference, atol=1e-5)


def test_flag_backend_equals_flag_reranker_compute_score(flag_scorer, cross_encoder_path):
    from FlagEmbedding import FlagReranker

    reranker = FlagReranker(cross_encoder_path, use_fp16=False, devices="cpu")
    texts = [d for d in DOCS if d.strip()]
    raw = reranker.compute_score([(QUERY, d) for d in texts])
    probabilities = reranker.compute_score([(QUERY, d) for d in texts], normalize=True)
    np.testing.assert_allclose(flag_scorer.score(QUERY, texts), probabilities, atol=1e-5)
    raw_scorer = CrossEncoderScorer(cross_encoder_path, backend="flag", device="cpu", normalize=False)
    np.testing.assert_allclose(raw_scorer.score(QUERY, texts), raw, atol=1e-5)


@pytest.mark.parametrize("normalize", [True, False])
def test_both_backends_give_the_same_scores(cross_encoder_path, normalize):
    texts = [d for d in DOCS if d.strip()]
    st_scores = CrossEncoderScorer(cross_encoder_path, backend="sentence-transformers", normalize=normalize).score(QUERY, texts)
    flag_scores = CrossEncoderScorer(cross_encoder_path, backend="flag", normalize=normalize).score(QUERY, texts)
    np.testing.assert_allclose(st_scores, flag_scores, atol=1e-4)
    if normalize:
        assert all(0.0 < s < 1.0 for s in st_scores)


def test_normalize_is_the_sigmoid_of_the_logits(cross_encoder_path, st_scorer):
    logits = CrossEncoderScorer(cross_encoder_path, backend="sentence-transformers", normalize=False).score(QUERY, DOCS)
    np.testing.assert_allclose(st_scorer.score(QUERY, DOCS), sigmoid(np.array(logits)), atol=1e-7)


def test_query_instruction_is_prepended(cross_encoder_path, st_scorer):
    instructed = CrossEncoderScorer(cross_encoder_path, backend="sentence-transformers", query_instruction="query: ")
    np.testing.assert_allclose(instructed.score(QUERY, DOCS[:2]), st_scorer.score("query: " + QUERY, DOCS[:2]), atol=1e-7)


def test_split_scores_each_passage_and_keeps_the_best(cross_encoder_path):
    scorer = CrossEncoderScorer(cross_encoder_path, backend="sentence-transformers", max_length=48, long_documents="split", passage_overlap=8)
    truncating = CrossEncoderScorer(cross_encoder_path, backend="sentence-transformers", max_length=48)
    long_text = " ".join(f"sentence {i} about cats and their food." for i in range(40))
    budget = 48 - scorer._splitter.count_tokens(QUERY) - 3
    passages = scorer._splitter.split(long_text, budget)
    assert len(passages) > 3
    assert all(p in long_text for p in passages)
    assert passages[0].startswith("sentence 0") and passages[-1].endswith("food.")
    assert all(scorer._splitter.count_tokens(p) <= budget for p in passages)
    expected = max(truncating.score(QUERY, passages))
    assert scorer.score(QUERY, [long_text])[0] == pytest.approx(expected, abs=1e-6)
    assert scorer.score(QUERY, ["short text"]) == pytest.approx(truncating.score(QUERY, ["short text"]), abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backend": "onnx"}, "backend='onnx' is not supported"),
        ({"batch_size": -1}, "batch_size=-1"),
        ({"max_length": 0}, "max_length=0"),
        ({"long_documents": "chunk"}, "long_documents='chunk'"),
    ],
)
def test_bad_settings_fail_at_construction(cross_encoder_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CrossEncoderScorer(cross_encoder_path, **kwargs)


def test_unknown_keyword_is_rejected(cross_encoder_path):
    with pytest.raises(TypeError, match="devices"):
        CrossEncoderScorer(cross_encoder_path, devices="cpu")


def test_model_missing_offline_fails_fast_and_says_how_to_fix():
    started = time.perf_counter()
    with pytest.raises(ModelNotFoundError) as excinfo:
        CrossEncoderScorer("BAAI/bge-reranker-base")
    assert time.perf_counter() - started < 1.0
    message = str(excinfo.value)
    assert "BAAI/bge-reranker-base" in message and "offline" in message and "local directory" in message


def test_missing_local_path_names_the_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a directory"):
        CrossEncoderScorer(str(tmp_path / "nowhere" / "model"))


@pytest.mark.parametrize("backend", ["sentence-transformers", "flag"])
def test_eight_threads_give_the_serial_scores(cross_encoder_path, backend):
    # FlagReranker's tokenizer is shared state: without the scorer's lock this workload raises
    # "Truncation error" or returns another thread's scores.
    scorer = CrossEncoderScorer(cross_encoder_path, backend=backend, batch_size=4, max_length=64)
    docs = [f"word{i} " * (i * 7 % 90 + 1) for i in range(40)]
    queries = [f"query {i} " * (i + 1) for i in range(8)]
    serial = [scorer.score(q, docs) for q in queries]
    results: dict[int, list[list[float]]] = {}
    barrier = threading.Barrier(8)

    def work(i):
        barrier.wait()
        results[i] = [scorer.score(queries[i], docs) for _ in range(3)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results.get(i) for i in range(8)] == [[s] * 3 for s in serial]


def test_concurrent_asyncio_tasks_give_the_serial_scores(flag_scorer):
    queries = [f"{QUERY} {i}" for i in range(6)]
    serial = [flag_scorer.score(q, DOCS) for q in queries]

    async def main():
        return await asyncio.gather(*(asyncio.to_thread(flag_scorer.score, q, DOCS) for q in queries))

    assert asyncio.run(main()) == serial
