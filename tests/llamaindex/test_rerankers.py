import asyncio
import threading
import time

import pytest
from llama_index.core import MockEmbedding, VectorStoreIndex
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from llamaindex_rerank_ext import ColBERTReranker, CrossEncoderReranker

QUERY = "what do cats eat?"
TEXTS = [
    "The stock market fell sharply on Monday.",
    "Cats are obligate carnivores and eat meat.",
    "",
    "猫是食肉动物，主要吃肉。",
    "Dogs eat a varied diet, cats eat fish.",
]


def make_nodes():
    return [NodeWithScore(node=TextNode(text=t, id_=f"n{i}", metadata={"source": i}), score=1.0 - i / 10) for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def cross_encoder(cross_encoder_path):
    return CrossEncoderReranker(model=cross_encoder_path, top_n=3, device="cpu")


@pytest.fixture(scope="module")
def colbert(colbert_path):
    return ColBERTReranker(model=colbert_path, device="cpu")


class RerankEvents(BaseEventHandler):
    starts: int = 0
    ends: int = 0

    @classmethod
    def class_name(cls) -> str:
        return "RerankEvents"

    def handle(self, event, **kwargs):
        if isinstance(event, ReRankStartEvent):
            self.starts += 1
        elif isinstance(event, ReRankEndEvent):
            self.ends += 1


@pytest.fixture
def rerank_events():
    handler = RerankEvents()
    dispatcher = get_dispatcher("llamaindex_rerank_ext.rerankers")
    dispatcher.add_event_handler(handler)
    yield handler
    dispatcher.event_handlers.remove(handler)


@pytest.mark.parametrize("reranker_name", ["cross_encoder", "colbert"])
def test_order_and_scores_come_from_the_scorer(request, reranker_name):
    reranker = request.getfixturevalue(reranker_name)
    nodes = make_nodes()
    out = reranker.postprocess_nodes(nodes, query_str=QUERY)
    expected = sorted(zip(reranker.scorer.score(QUERY, TEXTS), range(len(TEXTS))), key=lambda p: (-p[0], p[1]))
    expected = expected[: reranker.top_n] if reranker.top_n else expected
    assert [n.node.node_id for n in out] == [f"n{i}" for _, i in expected]
    assert [n.score for n in out] == pytest.approx([s for s, _ in expected])


def test_metadata_mode_decides_what_the_model_reads(cross_encoder_path):
    reranker = CrossEncoderReranker(model=cross_encoder_path, metadata_mode=MetadataMode.EMBED)
    nodes = make_nodes()
    seen_texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    assert "source: 1" in seen_texts[1]
    out = reranker.postprocess_nodes(nodes, query_str=QUERY)
    expected = sorted(reranker.scorer.score(QUERY, seen_texts), reverse=True)
    assert [n.score for n in out] == pytest.approx(expected)
    assert [n.score for n in out] != pytest.approx(sorted(reranker.scorer.score(QUERY, TEXTS), reverse=True))


def test_callers_nodes_are_not_mutated_and_retrieval_score_is_kept(cross_encoder):
    nodes = make_nodes()
    before = [(n.score, dict(n.node.metadata)) for n in nodes]
    out = cross_encoder.postprocess_nodes(nodes, query_str=QUERY)
    assert [(n.score, n.node.metadata) for n in nodes] == before
    for result in out:
        original = next(n for n in nodes if n.node.node_id == result.node.node_id)
        assert result is not original and result.node is not original.node
        assert result.node.metadata["retrieval_score"] == original.score
        assert result.node.metadata["source"] == original.node.metadata["source"]
        assert "retrieval_score" not in result.node.get_content(metadata_mode="llm")


def test_outputs_are_copies_even_without_retrieval_score(cross_encoder_path):
    reranker = CrossEncoderReranker(model=cross_encoder_path, keep_retrieval_score=False)
    nodes = make_nodes()
    nodes[0].score = None
    out = reranker.postprocess_nodes(nodes, query_str=QUERY)
    for result in out:
        result.node.metadata["touched"] = True
    assert all("touched" not in n.node.metadata and "retrieval_score" not in n.node.metadata for n in nodes)


def test_reranking_twice_keeps_one_retrieval_score_exclusion(cross_encoder):
    once = cross_encoder.postprocess_nodes(make_nodes(), query_str=QUERY)
    twice = cross_encoder.postprocess_nodes(once, query_str=QUERY)
    assert all(n.node.excluded_llm_metadata_keys.count("retrieval_score") == 1 for n in twice)
    first_scores = {n.node.node_id: n.score for n in once}
    assert all(n.node.metadata["retrieval_score"] == first_scores[n.node.node_id] for n in twice)


def test_empty_input_returns_empty_and_events_balance(cross_encoder, rerank_events):
    assert cross_encoder.postprocess_nodes([], query_str=QUERY) == []
    assert (rerank_events.starts, rerank_events.ends) == (1, 1)


def test_events_balance_when_scoring_fails(cross_encoder_path, rerank_events):
    reranker = CrossEncoderReranker(model=cross_encoder_path, device="cpu")

    class Broken:
        def score(self, query, texts):
            raise RuntimeError("model exploded")

    reranker._scorer = Broken()
    with pytest.raises(RuntimeError, match="model exploded"):
        reranker.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert (rerank_events.starts, rerank_events.ends) == (1, 1)


def test_missing_query_is_a_clear_error(cross_encoder):
    with pytest.raises(ValueError, match="needs the query"):
        cross_encoder.postprocess_nodes(make_nodes())


def test_duplicate_nodes_and_top_n_above_candidates(cross_encoder_path):
    reranker = CrossEncoderReranker(model=cross_encoder_path, top_n=50)
    nodes = make_nodes()
    out = reranker.postprocess_nodes(nodes + nodes[:2], query_str=QUERY)
    assert len(out) == len(nodes) + 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"top_n": 0}, "top_n=0"), ({"batch_size": -2}, "batch_size=-2"), ({"backend": "tensorrt"}, "backend"), ({"devices": "cpu"}, "devices")],
)
def test_bad_settings_fail_at_construction(cross_encoder_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CrossEncoderReranker(model=cross_encoder_path, **kwargs)


def test_query_engine_with_reranker_as_postprocessor(colbert_path):
    texts = [f"note {i}: " + t for i, t in enumerate(TEXTS * 3) if t]
    index = VectorStoreIndex([TextNode(text=t, id_=f"d{i}") for i, t in enumerate(texts)], embed_model=MockEmbedding(embed_dim=8))
    reranker = ColBERTReranker(model=colbert_path, top_n=4)
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=8, node_postprocessors=[reranker])
    response = engine.query(QUERY)
    retrieved = index.as_retriever(similarity_top_k=8).retrieve(QUERY)
    expected = reranker.postprocess_nodes(retrieved, query_str=QUERY)
    assert [n.node.node_id for n in response.source_nodes] == [n.node.node_id for n in expected]
    assert len(response.source_nodes) == 4
    scores = [n.score for n in response.source_nodes]
    assert scores == sorted(scores, reverse=True)


async def test_async_postprocess_does_not_block_the_event_loop(cross_encoder_path):
    reranker = CrossEncoderReranker(model=cross_encoder_path, batch_size=1)
    nodes = make_nodes() * 20
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    out = await reranker.apostprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    task.cancel()
    assert len(out) == len(nodes)
    assert ticks > 5


async def test_concurrent_tasks_and_threads_match_serial(cross_encoder):
    queries = [f"{QUERY} {i}" for i in range(8)]
    serial = [[(n.node.node_id, n.score) for n in cross_encoder.postprocess_nodes(make_nodes(), query_str=q)] for q in queries]
    gathered = await asyncio.gather(*(cross_encoder.apostprocess_nodes(make_nodes(), query_str=q) for q in queries))
    assert [[(n.node.node_id, n.score) for n in out] for out in gathered] == serial

    threaded: dict[int, list] = {}

    def work(i):
        threaded[i] = [(n.node.node_id, n.score) for n in cross_encoder.postprocess_nodes(make_nodes(), query_str=queries[i])]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [threaded[i] for i in range(8)] == serial


def test_first_stage_weight_blends_the_node_scores(cross_encoder_path):
    from rerank_ext_core.rerank import blend_with_first_stage

    nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=i / 10) for i, t in enumerate(TEXTS)]
    follow_retriever = CrossEncoderReranker(model=cross_encoder_path, first_stage_weight=1.0)
    out = follow_retriever.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == [f"n{i}" for i in reversed(range(len(TEXTS)))]  # by node.score, not position
    half = CrossEncoderReranker(model=cross_encoder_path, first_stage_weight=0.5)
    blended = blend_with_first_stage(half.scorer.score(QUERY, TEXTS), [n.score for n in nodes], 0.5)
    expected = sorted(range(len(TEXTS)), key=lambda i: (-blended[i], i))
    out = half.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == [f"n{i}" for i in expected]
    assert [n.score for n in out] == pytest.approx([blended[i] for i in expected])
    assert out[0].node.metadata["retrieval_score"] == nodes[expected[0]].score
    own = half.scorer.score(QUERY, TEXTS)
    assert [n.node.metadata["reranker_score"] for n in out] == pytest.approx([own[i] for i in expected])
    assert "reranker_score" not in out[0].node.get_content(metadata_mode="llm")
