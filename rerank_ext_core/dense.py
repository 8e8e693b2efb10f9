"""The dense side of hybrid search: Chroma's own kNN query, sync or truly async."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from rerank_ext_core import chroma

__all__ = ["DenseSide"]

# Chroma's bindings take n_results as a 32-bit integer; it returns at most the collection anyway.
_MAX_RESULTS = 2**31 - 1


class DenseSide:
    """kNN over ``collection`` (or ``async_collection``, an ``AsyncCollection`` of the same data)
    with queries embedded by ``embedder`` (``None``: the collection's embedding function).
    Returns ``(id, similarity)`` pairs, best first; similarities come from Chroma's distances."""

    def __init__(self, collection: Any, embedder: Any = None, async_collection: Any = None) -> None:
        self.collection = collection
        self.embedder = embedder
        self.async_collection = async_collection
        self._to_similarity = chroma.similarity_from_distance(chroma.collection_space(collection))

    def search(
        self, query: str, n: int, where: dict[str, Any] | None, where_document: dict[str, Any] | None
    ) -> list[tuple[str, float]]:
        embedding = self.embedder.embed_query(query) if self.embedder is not None else None
        result = chroma.call(
            self.collection, "running the dense query", self.collection.query,
            **self._request(query, n, where, where_document, embedding),
        )
        return self._pairs(result)

    async def asearch(
        self, query: str, n: int, where: dict[str, Any] | None, where_document: dict[str, Any] | None
    ) -> list[tuple[str, float]]:
        if self.async_collection is None:
            return await asyncio.to_thread(self.search, query, n, where, where_document)
        embedding = None
        if self.embedder is not None:
            aembed = getattr(self.embedder, "aembed_query", None)
            if aembed is not None:
                embedding = await aembed(query)
            else:
                embedding = await asyncio.to_thread(self.embedder.embed_query, query)
        result = await chroma.acall(
            self.async_collection, "running the dense query", self.async_collection.query,
            **self._request(query, n, where, where_document, embedding),
        )
        return self._pairs(result)

    @staticmethod
    def _request(
        query: str, n: int, where: dict[str, Any] | None, where_document: dict[str, Any] | None,
        embedding: Sequence[float] | None,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "n_results": min(n, _MAX_RESULTS),
            "where": where,
            "where_document": where_document,
            "include": ["distances"],
        }
        if embedding is None:
            request["query_texts"] = [query]
        else:
            request["query_embeddings"] = [list(map(float, embedding))]
        return request

    def _pairs(self, result: Mapping[str, Any]) -> list[tuple[str, float]]:
        ids = result["ids"][0] if result["ids"] else []
        distances = result["distances"][0] if result.get("distances") else []
        return [(doc_id, self._to_similarity(float(d))) for doc_id, d in zip(ids, distances)]
