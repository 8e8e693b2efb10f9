"""Chroma access shared by the hybrid engine: paged reads, client kinds, distance spaces, and
errors that name the server when it cannot be reached.

Nothing here imports chromadb: the functions take the caller's collection object.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "ChromaUnavailableError",
    "acall",
    "aget_by_ids",
    "apply_request_timeout",
    "call",
    "check_filter",
    "client_kind",
    "collection_space",
    "get_by_ids",
    "iter_pages",
    "persist_directory",
    "server_address",
    "similarity_from_distance",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 2000


class ChromaUnavailableError(ConnectionError):
    """The Chroma server could not be reached. Nothing needs rebuilding once it is back."""


def _settings(collection: Any) -> Any:
    client = getattr(collection, "_client", None)
    get_settings = getattr(client, "get_settings", None)
    return get_settings() if callable(get_settings) else None


def client_kind(collection: Any) -> str:
    """``"http"`` (a Chroma server), ``"persistent"`` or ``"ephemeral"``."""
    settings = _settings(collection)
    if settings is None:
        return "ephemeral"
    if "fastapi" in str(getattr(settings, "chroma_api_impl", "")).lower() or getattr(
        settings, "chroma_server_host", None
    ):
        return "http"
    return "persistent" if getattr(settings, "is_persistent", False) else "ephemeral"


def server_address(collection: Any) -> str | None:
    settings = _settings(collection)
    if settings is None or client_kind(collection) != "http":
        return None
    scheme = "https" if getattr(settings, "chroma_server_ssl_enabled", False) else "http"
    return f"{scheme}://{settings.chroma_server_host}:{settings.chroma_server_http_port}"


def persist_directory(collection: Any) -> Path | None:
    """The folder a PersistentClient keeps its data in, or None for other clients."""
    settings = _settings(collection)
    if settings is None or client_kind(collection) != "persistent":
        return None
    directory = getattr(settings, "persist_directory", None)
    return Path(os.fspath(directory)) if directory else None


def apply_request_timeout(collection: Any, seconds: float) -> bool:
    """Give a Chroma server client's requests a time limit (chromadb's own HttpClient waits
    forever). It applies to every collection of that client. Returns False for other clients."""
    if client_kind(collection) != "http":
        return False
    session = getattr(getattr(collection, "_client", None), "_session", None)
    if session is None or not hasattr(session, "timeout"):
        logger.warning("Could not set a request timeout on %r: its HTTP session was not found.", collection)
        return False
    import httpx  # installed with chromadb

    session.timeout = httpx.Timeout(seconds)
    return True


def check_filter(name: str, value: Any) -> dict[str, Any] | None:
    """A ``where`` or ``where_document`` filter checked by chromadb's own rules, with an error
    that names the argument. ``None`` and ``{}`` mean no filter."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        msg = f"{name} must be a dict (a Chroma filter such as {{'topic': 'cats'}}), got {type(value).__name__}."
        raise TypeError(msg)
    if not value:
        return None
    from chromadb.api.types import validate_where, validate_where_document

    validate = validate_where_document if name == "where_document" else validate_where
    try:
        validate(dict(value))
    except (ValueError, TypeError) as exc:
        msg = f"{name}={value!r:.120} is not a valid Chroma filter: {exc}"
        raise ValueError(msg) from None
    return dict(value)


def collection_space(collection: Any) -> str:
    """The collection's distance space: ``"l2"`` (Chroma's default), ``"cosine"`` or ``"ip"``."""
    for source in ("configuration", "configuration_json"):
        config = getattr(collection, source, None)
        if isinstance(config, dict):
            hnsw = config.get("hnsw") or {}
            space = hnsw.get("space") if isinstance(hnsw, dict) else None
            if space:
                return str(space)
    metadata = getattr(collection, "metadata", None) or {}
    return str(metadata.get("hnsw:space", "l2"))


def similarity_from_distance(space: str) -> Callable[[float], float]:
    """Map Chroma distances to similarities (higher = better). For unit-length embeddings all
    three spaces give the cosine similarity: cosine/ip ``1 - d``, squared l2 ``1 - d / 2``."""
    if space == "l2":
        return lambda distance: 1.0 - distance / 2.0
    return lambda distance: 1.0 - distance


def _is_transport_error(exc: BaseException) -> bool:
    httpx = sys.modules.get("httpx")
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if httpx is not None and isinstance(current, httpx.TransportError):
            return True
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        if "could not connect to a chroma server" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


def _unavailable(collection: Any, what: str, exc: BaseException) -> ChromaUnavailableError:
    address = server_address(collection) or "(local client)"
    msg = (
        f"The Chroma server at {address} could not be reached while {what} "
        f"({type(exc).__name__}: {exc}). Check that it is running (chroma run --host ... --port ...) "
        "and reachable; the next call works once it is back, nothing needs rebuilding."
    )
    return ChromaUnavailableError(msg)


@contextlib.contextmanager
def _reporting_transport_errors(collection: Any, what: str) -> Iterator[None]:
    """A transport failure inside the block becomes :class:`ChromaUnavailableError`."""
    try:
        yield
    except ChromaUnavailableError:
        raise
    except Exception as exc:
        if _is_transport_error(exc):
            raise _unavailable(collection, what, exc) from exc
        raise


def call(collection: Any, what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``function``; a transport failure becomes :class:`ChromaUnavailableError`."""
    with _reporting_transport_errors(collection, what):
        return function(*args, **kwargs)


async def acall(
    collection: Any, what: str, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
) -> T:
    """:func:`call` for a coroutine function (an ``AsyncCollection``'s methods)."""
    with _reporting_transport_errors(collection, what):
        return await function(*args, **kwargs)


def iter_pages(
    collection: Any,
    *,
    include: Sequence[str] = (),
    where: dict[str, Any] | None = None,
    where_document: dict[str, Any] | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Iterator[dict[str, Any]]:
    """Yield ``collection.get`` results one page at a time (``limit``/``offset``), so a large
    collection is never read in one request."""
    offset = 0
    while True:
        page = call(
            collection,
            "reading the collection",
            collection.get,
            where=where,
            where_document=where_document,
            limit=page_size,
            offset=offset,
            include=list(include),
        )
        ids = page["ids"]
        if ids:
            yield page
        if len(ids) < page_size:
            return
        offset += page_size


def _id_batches(ids: Sequence[str], page_size: int) -> Iterator[list[str]]:
    for start in range(0, len(ids), page_size):
        yield list(ids[start : start + page_size])


def get_by_ids(
    collection: Any, ids: Sequence[str], *, include: Sequence[str], page_size: int = DEFAULT_PAGE_SIZE
) -> dict[str, dict[str, Any]]:
    """``{id: {"document": ..., "metadata": ...}}`` for the ids that exist, read in pages."""
    records: dict[str, dict[str, Any]] = {}
    for batch in _id_batches(ids, page_size):
        page = call(collection, "reading documents", collection.get, ids=batch, include=list(include))
        _collect(page, include, records)
    return records


def _collect(page: dict[str, Any], include: Sequence[str], records: dict[str, dict[str, Any]]) -> None:
    documents = page.get("documents") if "documents" in include else None
    metadatas = page.get("metadatas") if "metadatas" in include else None
    for position, doc_id in enumerate(page["ids"]):
        records[doc_id] = {
            "document": documents[position] if documents is not None else None,
            "metadata": metadatas[position] if metadatas is not None else None,
        }


async def aget_by_ids(
    collection: Any, ids: Sequence[str], *, include: Sequence[str], page_size: int = DEFAULT_PAGE_SIZE
) -> dict[str, dict[str, Any]]:
    """:func:`get_by_ids` for a chromadb ``AsyncCollection``."""
    records: dict[str, dict[str, Any]] = {}
    for batch in _id_batches(ids, page_size):
        page = await acall(collection, "reading documents", collection.get, ids=batch, include=list(include))
        _collect(page, include, records)
    return records
