"""ColBERT document vectors computed when documents enter a collection, so reranking encodes only
the query.

A :class:`ColBERTVectorStore` follows one collection through its
:class:`~rerank_ext_core.mirror.BM25Mirror` (``ChromaHybridSearch(..., colbert_vectors=store)``):
documents written through us are encoded at write time, documents other writers add are encoded
when the mirror notices them (off the query path, with the background refresher), and a deleted
document's vectors are dropped. A :class:`~rerank_ext_core.colbert.ColBERTScorer` given the store
(``vector_store=store``) reads a document's vectors from it by the text's hash and encodes only
what is missing, so it still works with any input.

Vectors are kept as fp16 (half the bytes of fp32; MaxSim is computed in fp32). A persistent
client's store is saved atomically beside its data (the changes of ``save_interval`` seconds share
one save) and checked when loaded: one made with another
model or for another collection, a damaged file, or entries that disagree with the collection are
rebuilt or re-encoded, never trusted.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rerank_ext_core._validation import check_number

__all__ = ["ColBERTVectorStore", "text_key", "vector_signature"]

logger = logging.getLogger(__name__)

_FORMAT = 1
_FOLDER = "rerank_ext_colbert"


def vector_signature(scorer: Any) -> str:
    """What makes two scorers' document vectors interchangeable: the model's files and the
    settings that change the vectors (backend, precision, document length)."""
    from rerank_ext_core.evaluation.corpus_cache import model_fingerprint

    settings = f"{scorer.backend}|{scorer.precision}|{getattr(scorer._encoder, 'document_token_budget', '')}"
    return hashlib.sha256(f"{model_fingerprint(scorer.model_path)}|{settings}".encode()).hexdigest()


def text_key(text: str) -> bytes:
    """The key a document's vectors are found by (the scorer's cache uses the same)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class ColBERTVectorStore:
    """fp16 token vectors per document id, for one ColBERT model and one collection.

    Args:
        scorer: the :class:`~rerank_ext_core.colbert.ColBERTScorer` whose encoder makes the vectors
            (rerank with a scorer of the same model).
        path: where to save; ``"auto"`` (default) beside a PersistentClient's data, ``None``
            never saves.
        batch_size: documents encoded per call while catching up with a collection.
        save_interval: seconds a change may wait before the store is saved (default 30): a save
            rewrites the whole file, so the writes of those seconds share one. Changes not yet
            saved when the process ends are not lost: the next load checks the store against the
            collection and encodes what is missing. 0 saves after every change; :meth:`save`
            saves now.
    """

    def __init__(
        self,
        scorer: Any,
        *,
        path: str | os.PathLike[str] | None = "auto",
        batch_size: int = 256,
        save_interval: float = 30.0,
    ) -> None:
        self.scorer = scorer
        self.model_fingerprint = vector_signature(scorer)
        """The model and settings the vectors were made with (:func:`vector_signature`)."""
        self.batch_size = batch_size
        self._path_option = path
        self.path: Path | None = None
        self.collection_id: str | None = None
        self._keys: dict[str, bytes] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._by_key: dict[bytes, str] = {}
        self._lock = threading.RLock()
        self.documents_encoded = 0
        self.save_interval = check_number("save_interval", save_interval, low=0, example="save_interval=30.0 (seconds)")
        self.saves = 0
        self._pending_save: threading.Timer | None = None

    # ------------------------------------------------------------------------------- following
    def follow(self, mirror: Any) -> None:
        """Attach to ``mirror``'s collection: load the saved store if it matches, then encode what
        is missing or changed and drop what is gone (``mirror`` calls this once)."""
        from rerank_ext_core import chroma

        collection = mirror.collection
        self.collection_id = str(collection.id)
        if self._path_option == "auto":
            base = chroma.persist_directory(collection)
            self.path = None if base is None else base / _FOLDER / f"{collection.id}-{self.model_fingerprint[:16]}.npz"
        elif self._path_option is not None:
            self.path = Path(os.fspath(self._path_option))
        if self.path is not None and self.path.exists():
            self._load()
        current: dict[str, str] = {}
        for page in chroma.iter_pages(collection, include=["documents"], page_size=mirror.page_size):
            current.update((doc_id, text) for doc_id, text in zip(page["ids"], page["documents"]) if isinstance(text, str))
        stale = set(self._keys) - set(current)
        if stale:
            logger.warning("The ColBERT store had %d documents the collection no longer holds: dropped.", len(stale))
        self.remove(stale)
        self.upsert(list(current), list(current.values()))
        self.save()

    def upsert(self, ids: Sequence[str], texts: Sequence[Any]) -> None:
        """Encode the documents whose text is new or changed; others are left as they are."""
        with self._lock:
            todo = [(doc_id, text) for doc_id, text in zip(ids, texts)
                    if isinstance(text, str) and text.strip() and self._keys.get(doc_id) != text_key(text)]
        if not todo:
            return
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            vectors = self.scorer.encode_documents_uncached([text for _, text in batch])
            with self._lock:
                for (doc_id, text), vector in zip(batch, vectors):
                    self._drop(doc_id)
                    key = text_key(text)
                    self._keys[doc_id] = key
                    self._vectors[doc_id] = np.asarray(vector, dtype=np.float16)
                    self._by_key[key] = doc_id
                self.documents_encoded += len(batch)
        self._changed()

    def remove(self, ids: Iterable[str]) -> None:
        with self._lock:
            removed = [doc_id for doc_id in ids if doc_id in self._keys]
            for doc_id in removed:
                self._drop(doc_id)
        if removed:
            self._changed()

    def _changed(self) -> None:
        """Save now (``save_interval=0``) or once ``save_interval`` seconds have passed."""
        if self.path is None:
            return
        if self.save_interval == 0:
            self.save()
            return
        with self._lock:
            if self._pending_save is None:
                self._pending_save = threading.Timer(self.save_interval, self.save)
                self._pending_save.daemon = True
                self._pending_save.start()

    def _drop(self, doc_id: str) -> None:
        key = self._keys.pop(doc_id, None)
        self._vectors.pop(doc_id, None)
        if key is not None and self._by_key.get(key) == doc_id:
            del self._by_key[key]

    # ------------------------------------------------------------------------------- reading
    def vectors_for(self, key: bytes) -> Any:
        """The stored vectors of the document whose text has ``key`` (:func:`text_key`), as an
        fp32 torch tensor (one conversion, ready for MaxSim)."""
        import torch

        with self._lock:
            doc_id = self._by_key.get(key)
            vector = None if doc_id is None else self._vectors.get(doc_id)
        return None if vector is None else torch.from_numpy(vector).float()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._keys

    @property
    def tokens(self) -> int:
        return sum(v.shape[0] for v in self._vectors.values())

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self._vectors.values())

    # --------------------------------------------------------------------------- persistence
    def save(self) -> Path | None:
        """Write the store atomically (a temporary file, then a rename)."""
        if self.path is None:
            return None
        with self._lock:
            if self._pending_save is not None:
                self._pending_save.cancel()
                self._pending_save = None
            self.saves += 1
            ids = sorted(self._keys)
            lengths = np.array([self._vectors[i].shape[0] for i in ids], dtype=np.int64)
            dim = next(iter(self._vectors.values())).shape[1] if ids else 0
            flat = np.concatenate([self._vectors[i] for i in ids]) if ids else np.zeros((0, dim), np.float16)
            keys = np.frombuffer(b"".join(self._keys[i] for i in ids), dtype=np.uint8).reshape(len(ids), 16)
        temporary = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            with os.fdopen(handle, "wb") as out:
                np.savez(out, format=np.array(_FORMAT), ids=np.array(ids, dtype=str), keys=keys, lengths=lengths,
                         vectors=flat, model=np.array(self.model_fingerprint), collection=np.array(self.collection_id or ""))
            os.replace(temporary, self.path)
        except OSError as exc:
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)
            logger.warning("Could not save the ColBERT store to %s (%s); it stays in memory.", self.path, exc)
        return self.path

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                if int(data["format"]) != _FORMAT or str(data["model"]) != self.model_fingerprint:
                    raise ValueError("made by another format or another model")
                if str(data["collection"]) != self.collection_id:
                    raise ValueError("made for another collection")
                ids, keys, lengths, flat = data["ids"], data["keys"], data["lengths"], data["vectors"]
                if not (len(ids) == len(keys) == len(lengths)) or int(lengths.sum()) != flat.shape[0]:
                    raise ValueError("its arrays disagree")
                offsets = np.concatenate([[0], np.cumsum(lengths)])
                for position, doc_id in enumerate(ids.tolist()):
                    key = keys[position].tobytes()
                    self._keys[doc_id] = key
                    self._vectors[doc_id] = flat[offsets[position] : offsets[position + 1]].copy()
                    self._by_key[key] = doc_id
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, io.UnsupportedOperation) as exc:
            logger.warning("The saved ColBERT store %s is not usable (%s): rebuilding it from the collection.", self.path, exc)
            self._keys.clear()
            self._vectors.clear()
            self._by_key.clear()
