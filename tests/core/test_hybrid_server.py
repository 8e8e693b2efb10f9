"""Against a real `chroma run` server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from rerank_ext_core.chroma import ChromaUnavailableError, client_kind, server_address
from rerank_ext_core.hybrid import ChromaHybridSearch
from tests.hybrid_fixtures import fill, unique_name

chromadb = pytest.importorskip("chromadb")
pytestmark = pytest.mark.server


@pytest.fixture
def server_collection(http_client, embedder):
    name = unique_name()
    collection = http_client.create_collection(name, embedding_function=embedder)
    fill(collection, embedder)
    return collection


def test_http_client_hybrid_and_external_writes(server_collection, embedder, chroma_server):
    assert client_kind(server_collection) == "http"
    assert server_address(server_collection) == chroma_server.url
    search = ChromaHybridSearch(server_collection, embedder=embedder, check_interval=0, id_check_interval=0)
    assert search.index_path is None
    assert search.query("dogs walks", k=1)[0].id == "a2"
    other = chromadb.HttpClient(host=chroma_server.host, port=chroma_server.port)
    other.get_collection(server_collection.name).add(
        ids=["w1"], documents=["Walruses use tusks."], embeddings=embedder.embed_documents(["w"])
    )
    assert search.query("walruses tusks", k=1)[0].sparse_rank == 1


def test_async_http_client_runs_the_dense_side_async(server_collection, embedder, chroma_server):
    async def run():
        client = await chromadb.AsyncHttpClient(host=chroma_server.host, port=chroma_server.port)
        async_collection = await client.get_collection(server_collection.name)
        search = ChromaHybridSearch(server_collection, embedder=embedder, async_collection=async_collection)
        calls = []
        original = async_collection.query

        async def spy(**kwargs):
            calls.append(kwargs)
            return await original(**kwargs)

        async_collection.query = spy
        hits = await search.aquery("parrots speech", k=2)
        return hits, calls

    hits, calls = asyncio.run(run())
    assert hits[0].id == "a3" and hits[0].dense_rank is not None
    assert len(calls) == 1  # the dense query went through the async client


def test_async_collection_as_main_collection_is_rejected(server_collection, chroma_server):
    async def run():
        client = await chromadb.AsyncHttpClient(host=chroma_server.host, port=chroma_server.port)
        return await client.get_collection(server_collection.name)

    async_collection = asyncio.run(run())
    with pytest.raises(TypeError, match="async_collection="):
        ChromaHybridSearch(async_collection)


def test_server_down_gives_a_clear_error_and_recovers(server_collection, embedder, chroma_server):
    search = ChromaHybridSearch(server_collection, embedder=embedder, check_interval=0, id_check_interval=0)
    assert search.query("dogs", k=1)[0].id == "a2"
    chroma_server.stop()
    try:
        with pytest.raises(ChromaUnavailableError) as error:
            search.query("dogs", k=1)
        assert chroma_server.url in str(error.value)
        assert "running" in str(error.value)
    finally:
        chroma_server.start()
    assert search.query("dogs", k=1)[0].id == "a2"
