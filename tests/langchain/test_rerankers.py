import asyncio

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from langchain_rerank_ext import ColBERTReranker, CrossEncoderReranker

QUERY = "what do cats eat?"
TEXTS = [
    "The stock market fell sharply on Monday.",
    "Cats are obligate carnivores and eat meat.",
    "",
    "猫是食肉动物，主要吃肉。",
    "Dogs eat a varied diet, cats eat fish.",
]


def make_documents():
    return [Document(page_content=t, metadata={"source": i, "relevance_score": 0.9 - i / 10}, id=f"d{i}") for i, t in enumerate(TEXTS)]


class FixedRetriever(BaseRetriever):
    documents: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self.documents


@pytest.fixture(scope="module")
def cross_encoder(cross_encoder_path):
    return CrossEncoderReranker(model=cross_encoder_path, top_n=3, device="cpu")


@pytest.fixture(scope="module")
def colbert(colbert_path):
    return ColBERTReranker(model=colbert_path, device="cpu")


@pytest.mark.parametrize("reranker_name", ["cross_encoder", "colbert"])
def test_order_scores_and_copies(request, reranker_name):
    reranker = request.getfixturevalue(reranker_name)
    documents = make_documents()
    before = [dict(d.metadata) for d in documents]
    out = reranker.compress_documents(documents, QUERY)
    expected = sorted(zip(reranker.scorer.score(QUERY, TEXTS), range(len(TEXTS))), key=lambda p: (-p[0], p[1]))
    expected = expected[: reranker.top_n] if reranker.top_n else expected
    assert [d.id for d in out] == [f"d{i}" for _, i in expected]
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx([s for s, _ in expected])
    assert [d.metadata for d in documents] == before
    for doc in out:
        original = next(d for d in documents if d.id == doc.id)
        assert doc is not original and doc.metadata is not original.metadata
        assert doc.metadata["retrieval_score"] == original.metadata["relevance_score"]
        assert doc.metadata["source"] == original.metadata["source"]


def test_empty_and_oversized_top_n(cross_encoder_path):
    reranker = CrossEncoderReranker(model=cross_encoder_path, top_n=100)
    assert reranker.compress_documents([], QUERY) == []
    assert len(reranker.compress_documents(make_documents(), QUERY)) == len(TEXTS)


@pytest.mark.parametrize(("kwargs", "match"), [({"top_n": -1}, "top_n=-1"), ({"batch_size": 0}, "batch_size=0"), ({"modle": "x"}, "modle")])
def test_bad_settings_fail_at_construction(cross_encoder_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CrossEncoderReranker(model=cross_encoder_path, **kwargs)


def test_contextual_compression_retriever_end_to_end(cross_encoder):
    retriever = ContextualCompressionRetriever(base_compressor=cross_encoder, base_retriever=FixedRetriever(documents=make_documents()))
    docs = retriever.invoke(QUERY)
    assert [d.id for d in docs] == [d.id for d in cross_encoder.compress_documents(make_documents(), QUERY)]
    assert len(docs) == 3
    async_docs = asyncio.run(retriever.ainvoke(QUERY))
    assert [(d.id, d.metadata["relevance_score"]) for d in async_docs] == [(d.id, d.metadata["relevance_score"]) for d in docs]


def test_lcel_chain(colbert):
    retriever = ContextualCompressionRetriever(base_compressor=colbert, base_retriever=FixedRetriever(documents=make_documents()))
    chain = {"context": retriever | RunnableLambda(lambda docs: "\n".join(d.page_content for d in docs)), "question": RunnablePassthrough()} | RunnableLambda(
        lambda x: f"Q: {x['question']}\n{x['context']}"
    )
    prompt = chain.invoke(QUERY)
    best = colbert.compress_documents(make_documents(), QUERY)[0].page_content
    assert prompt.startswith(f"Q: {QUERY}\n{best}")


def test_concurrent_async_calls_match_serial(cross_encoder):
    queries = [f"{QUERY} {i}" for i in range(8)]
    serial = [[d.metadata["relevance_score"] for d in cross_encoder.compress_documents(make_documents(), q)] for q in queries]

    async def main():
        return await asyncio.gather(*(cross_encoder.acompress_documents(make_documents(), q) for q in queries))

    assert [[d.metadata["relevance_score"] for d in out] for out in asyncio.run(main())] == serial


def test_first_stage_weight_blends_relevance_score_or_else_position(cross_encoder_path):
    reranker = CrossEncoderReranker(model=cross_encoder_path, first_stage_weight=1.0)
    scored = [Document(page_content=t, metadata={"relevance_score": i / 10}, id=f"d{i}") for i, t in enumerate(TEXTS)]
    out = reranker.compress_documents(scored, QUERY)
    assert [d.id for d in out] == [f"d{i}" for i in reversed(range(len(TEXTS)))]  # by relevance_score
    plain = [Document(page_content=t, id=f"d{i}") for i, t in enumerate(TEXTS)]
    out = reranker.compress_documents(plain, QUERY)
    assert [d.id for d in out] == [f"d{i}" for i in range(len(TEXTS))]  # no scores: the input order
    own = reranker.scorer.score(QUERY, TEXTS)
    assert [d.metadata["reranker_score"] for d in out] == pytest.approx(own)  # the reranker's own score is kept
