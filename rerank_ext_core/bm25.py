"""A BM25 index keyed by document id that can change after it is built.

bm25s scores a static matrix. This index keeps every document's token ids (tokenized once) and
rebuilds the bm25s matrix from them when a query arrives after documents were added or changed, so
many writes cost one rebuild and no text is tokenized twice. Removals alone do not force a rebuild:
removed rows are masked out of the scores until they exceed ``rebuild_ratio`` of the matrix (their
term statistics then stop being close enough).

Size: BM25Index is over 250 lines because its persistence (``save``/``load``, about 90 lines)
reads and writes the same private token arrays under the same lock as the index itself; moving
it out would mean exposing them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rerank_ext_core._optional import require
from rerank_ext_core._validation import check_choice, check_number
from rerank_ext_core.tokenization import Tokenizer

__all__ = ["BM25Index", "content_hash", "score_matrix"]

logger = logging.getLogger(__name__)

_FORMAT_VERSION = 1


def content_hash(text: str) -> str:
    """The digest stored per document to notice that its text changed."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


@dataclass(frozen=True)
class _Matrix:
    scorer: Any  # bm25s.BM25 holding the score matrix
    row_ids: tuple[str, ...]
    row_of: dict[str, int]
    compact_of: np.ndarray  # global token id -> matrix column, -1 when absent


BM25_METHODS: tuple[str, ...] = ("lucene", "robertson", "atire", "bm25l", "bm25+")


def _idf(method: str, df: np.ndarray, n_docs: int) -> np.ndarray:
    if method == "robertson":
        return np.log(np.maximum((n_docs - df + 0.5) / (df + 0.5), 1.0))
    if method == "lucene":
        return np.log(1 + (n_docs - df + 0.5) / (df + 0.5))
    if method == "atire":
        return np.log(n_docs / df)
    if method == "bm25l":
        return np.log((n_docs + 1) / (df + 0.5))
    return np.log((n_docs + 1) / df)  # bm25+


def _term_frequency_component(method: str, tf: Any, length: Any, average: float, k1: float, b: float, delta: float) -> Any:
    norm = 1 - b + b * length / average
    if method in ("robertson", "lucene"):
        return tf / (k1 * norm + tf)
    if method == "atire":
        return tf * (k1 + 1) / (tf + k1 * norm)
    if method == "bm25l":
        c = tf / norm
        return (k1 + 1) * (c + delta) / (k1 + c + delta)
    return (k1 + 1) * tf / (k1 * norm + tf) + delta  # bm25+


def score_matrix(
    columns: np.ndarray, lengths: np.ndarray, n_terms: int, *, method: str, k1: float, b: float, delta: float
) -> tuple[dict[str, Any], np.ndarray | None]:
    """The BM25 score matrix that ``bm25s.BM25.build_index_from_ids`` makes (same CSC arrays, same
    values to float32 rounding), computed with whole-array numpy instead of a Python loop per
    document: at 100k documents about 0.1 s instead of about 1 s of held GIL.

    ``columns`` holds every document's term columns, documents one after another; ``lengths`` the
    number of tokens per document. Returns bm25s's ``scores`` dict and its non-occurrence array
    (BM25L and BM25+ only, else None)."""
    n_docs = len(lengths)
    rows_of_tokens = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    # One key per (term, document), sorted by term then document: CSC order.
    keys, tf = np.unique(columns.astype(np.int64) * n_docs + rows_of_tokens, return_counts=True)
    term, row = np.divmod(keys, n_docs)
    df = np.bincount(term, minlength=n_terms).astype(np.float64)
    average = float(lengths.mean())
    idf = _idf(method, df, n_docs).astype(np.float32)
    scores = idf[term] * _term_frequency_component(method, tf.astype(np.float64), lengths[row], average, k1, b, delta)
    nonoccurrence = None
    if method in ("bm25l", "bm25+"):
        nonoccurrence = (idf * _term_frequency_component(method, 0.0, average, average, k1, b, delta)).astype(np.float32)
        scores -= nonoccurrence[term]
    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(np.bincount(term, minlength=n_terms), out=indptr[1:])
    matrix = {"data": scores.astype(np.float32), "indices": row.astype(np.int32), "indptr": indptr, "num_docs": n_docs}
    return matrix, nonoccurrence


class BM25Index:
    """BM25 over documents identified by string ids, with upsert and remove.

    Args:
        tokenizer: the :class:`Tokenizer` (default: English + Chinese stopwords, English stemming, CJK unigrams + bigrams).
        k1, b, method: BM25 parameters passed to ``bm25s.BM25`` (Lucene variant by default).
        rebuild_ratio: removed-but-still-in-matrix rows tolerated before a rebuild.

    Thread-safe: writers and readers may run concurrently; a search sees a consistent snapshot.
    """

    def __init__(
        self,
        tokenizer: Tokenizer | None = None,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        rebuild_ratio: float = 0.1,
    ) -> None:
        check_choice("method", method, BM25_METHODS)
        check_number("k1", k1, low=0.0, example="k1=1.5")
        check_number("b", b, low=0.0, high=1.0, example="b=0.75")
        check_number("rebuild_ratio", rebuild_ratio, low=0.0, example="rebuild_ratio=0.1")
        self.tokenizer = tokenizer if tokenizer is not None else Tokenizer()
        self._bm25_params = {"k1": float(k1), "b": float(b), "method": method}
        self._rebuild_ratio = rebuild_ratio
        self._lock = threading.RLock()
        self._vocab: dict[str, int] = {}
        self._tokens: dict[str, np.ndarray] = {}
        self._hashes: dict[str, str] = {}
        self._matrix: _Matrix | None = None
        self._stale = False  # documents were added or changed since the matrix was built
        self._removed_rows: set[int] = set()
        self._upserts = 0
        self._builds_in_progress: list[list[str]] = []
        """One list per :meth:`refresh_matrix` building from a snapshot: the ids upserted or
        removed meanwhile."""
        self.rebuilds = 0
        self.defer_rebuilds = False
        """When True a search uses the current matrix even if it is stale, and whoever set this
        (the mirror's background refresher) calls :meth:`refresh_matrix`: no query pays a rebuild."""

    # ---------------------------------------------------------------- contents
    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._tokens

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    def hash_of(self, doc_id: str) -> str | None:
        return self._hashes.get(doc_id)

    def upsert(self, ids: Sequence[str], texts: Sequence[Any]) -> list[str]:
        """Add or replace documents. Returns the ids skipped because their text is empty or not a
        string (each logged as a warning); a skipped id that was indexed is removed."""
        if len(ids) != len(texts):
            msg = f"upsert got {len(ids)} ids but {len(texts)} texts; pass one text per id."
            raise ValueError(msg)
        prepared: list[tuple[str, str, list[str]]] = []
        skipped: list[str] = []
        for doc_id, text in zip(ids, texts):
            if not isinstance(text, str) or not text.strip():
                kind = "empty" if isinstance(text, str) or text is None else type(text).__name__
                logger.warning("Document %r skipped by BM25: its content is %s, not text.", doc_id, kind)
                skipped.append(doc_id)
                continue
            digest = content_hash(text)
            if self._hashes.get(doc_id) == digest:
                continue
            prepared.append((doc_id, digest, self.tokenizer.tokenize(text)))
        with self._lock:
            if skipped:
                self._remove_locked(skipped)
            for doc_id, digest, tokens in prepared:
                token_ids = [self._vocab.setdefault(token, len(self._vocab)) for token in tokens]
                if doc_id in self._tokens and self._matrix is not None:
                    row = self._matrix.row_of.get(doc_id)
                    if row is not None:
                        self._removed_rows.add(row)
                self._tokens[doc_id] = np.asarray(token_ids, dtype=np.int32)
                for changed in self._builds_in_progress:
                    changed.append(doc_id)
                self._hashes[doc_id] = digest
                self._stale = True
                self._upserts += 1
        return skipped

    def remove(self, ids: Iterable[str]) -> None:
        with self._lock:
            self._remove_locked(ids)

    def _remove_locked(self, ids: Iterable[str]) -> None:
        for doc_id in ids:
            if self._tokens.pop(doc_id, None) is None:
                continue
            for changed in self._builds_in_progress:
                changed.append(doc_id)
            self._hashes.pop(doc_id, None)
            if self._matrix is not None and doc_id in self._matrix.row_of:
                self._removed_rows.add(self._matrix.row_of[doc_id])

    # ----------------------------------------------------------------- search
    def _needs_rebuild_locked(self) -> bool:
        return self._stale or (
            self._matrix is not None
            and len(self._removed_rows) > self._rebuild_ratio * max(len(self._matrix.row_ids), 1)
        )

    def _current_matrix(self) -> tuple[_Matrix | None, frozenset[int]]:
        with self._lock:
            first = self._matrix is None and bool(self._tokens)
            if self._needs_rebuild_locked() and (first or not self.defer_rebuilds):
                self._matrix = self._build(self._tokens, len(self._vocab))
                self._removed_rows = set()
                self._stale = False
            return self._matrix, frozenset(self._removed_rows)

    def refresh_matrix(self) -> bool:
        """Rebuild a stale matrix now, building from a snapshot *without* holding the lock, so
        concurrent searches keep using the current matrix meanwhile; then swap it in. Changes
        made during the build are masked (removed or replaced documents) or leave the matrix
        stale for the next call (added ones). Returns whether it rebuilt."""
        with self._lock:
            if not self._needs_rebuild_locked():
                return False
            snapshot = dict(self._tokens)
            vocab_size = len(self._vocab)
            upserts = self._upserts
            changed: list[str] = []
            self._builds_in_progress.append(changed)
        try:
            matrix = self._build(snapshot, vocab_size)
        finally:
            with self._lock:
                self._builds_in_progress = [other for other in self._builds_in_progress if other is not changed]
        with self._lock:
            removed_rows: set[int] = set()
            if matrix is not None:
                removed_rows = {matrix.row_of[doc_id] for doc_id in changed if doc_id in matrix.row_of}
            self._matrix, self._removed_rows = matrix, removed_rows
            self._stale = self._upserts != upserts
        return True

    def _build(self, tokens: dict[str, np.ndarray], vocab_size: int) -> _Matrix | None:
        bm25s = require("bm25s", feature="BM25 retrieval", extra="bm25")
        self.rebuilds += 1
        row_ids = tuple(tokens)
        arrays = [tokens[doc_id] for doc_id in row_ids]
        flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int32)
        if flat.size == 0:
            return None
        lengths = np.fromiter((array.size for array in arrays), dtype=np.int64, count=len(arrays))
        used = np.flatnonzero(np.bincount(flat, minlength=vocab_size))
        compact_of = np.full(vocab_size, -1, dtype=np.int64)
        compact_of[used] = np.arange(len(used))
        columns = compact_of[flat]
        scorer = bm25s.BM25(**self._bm25_params)
        scorer.scores, scorer.nonoccurrence_array = score_matrix(
            columns, lengths, len(used), method=scorer.method, k1=scorer.k1, b=scorer.b, delta=scorer.delta
        )
        scorer.vocab_dict = {}
        logger.debug("BM25 matrix built: %d documents, %d terms", len(row_ids), len(used))
        return _Matrix(
            scorer=scorer,
            row_ids=row_ids,
            row_of={doc_id: row for row, doc_id in enumerate(row_ids)},
            compact_of=compact_of,
        )

    def search(
        self, query: str, k: int, *, allowed_ids: Collection[str] | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` best (id, BM25 score) pairs, best first; only documents scoring above zero.

        ``k`` larger than the corpus is clamped. ``allowed_ids`` restricts the result (used for
        Chroma ``where`` filters); ids not in the index are ignored.
        """
        if k <= 0:
            msg = f"k={k} must be a positive number of results."
            raise ValueError(msg)
        tokens = self.tokenizer.tokenize(query) if isinstance(query, str) else []
        matrix, removed_rows = self._current_matrix()
        if matrix is None or not tokens:
            return []
        token_ids = [self._vocab.get(token, -1) for token in tokens]
        columns = [int(matrix.compact_of[t]) for t in token_ids if 0 <= t < len(matrix.compact_of)]
        columns = [c for c in columns if c >= 0]
        if not columns:
            return []
        mask = None
        if allowed_ids is not None:
            mask = np.zeros(len(matrix.row_ids), dtype=np.float32)
            rows = [matrix.row_of[i] for i in allowed_ids if i in matrix.row_of]
            if not rows:
                return []
            mask[rows] = 1.0
        if removed_rows:
            if mask is None:
                mask = np.ones(len(matrix.row_ids), dtype=np.float32)
            mask[list(removed_rows)] = 0.0
        scores = matrix.scorer.get_scores_from_ids(columns, weight_mask=mask)
        positive = np.flatnonzero(scores > 0)
        if positive.size == 0:
            return []
        k = min(k, positive.size)
        if k < positive.size:
            best = positive[np.argpartition(-scores[positive], k - 1)[:k]]
        else:
            best = positive
        order = best[np.lexsort((best, -scores[best]))]
        return [(matrix.row_ids[row], float(scores[row])) for row in order]

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None) -> None:
        """Write the tokenized documents to ``path`` atomically (temporary file, then
        ``os.replace``): a crash while saving leaves the previous file intact."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            ids = list(self._tokens)
            arrays = [self._tokens[i] for i in ids]
            hashes = [self._hashes[i] for i in ids]
            vocab = [""] * len(self._vocab)
            for token, token_id in self._vocab.items():
                vocab[token_id] = token
        lengths = np.asarray([len(a) for a in arrays], dtype=np.int64)
        header = {
            "format": _FORMAT_VERSION,
            "tokenizer": self.tokenizer.signature,
            "bm25": self._bm25_params,
            "extra": extra or {},
        }
        fd, tmp_name = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(
                    handle,
                    header=np.asarray(json.dumps(header)),
                    ids=np.asarray(ids, dtype=str),
                    hashes=np.asarray(hashes, dtype=str),
                    lengths=lengths,
                    tokens=np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int32),
                    vocab=np.asarray(vocab, dtype=str),
                )
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        logger.debug("BM25 index saved to %s (%d documents)", path, len(ids))

    def load(
        self, path: str | os.PathLike[str], *, expect: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Replace the contents with those saved at ``path``. Returns the saved ``extra`` dict.

        Returns None and leaves the contents unchanged when the file is missing, or when it cannot
        be used: damaged (truncated, empty, not a zip, inconsistent arrays), saved in another
        format, with another tokenizer or BM25 setting, or with an ``extra`` that disagrees with
        ``expect`` (another collection's index). Every such case logs a warning: the caller
        rebuilds the index from its source.
        """
        path = Path(path)
        if not path.exists():
            return None
        try:
            loaded = self._read(path, expect or {})
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, it is rebuilt
            logger.warning("Ignoring the unreadable BM25 index %s (%s: %s); it will be rebuilt.",
                           path, type(exc).__name__, exc)
            return None
        if isinstance(loaded, str):
            logger.warning("Ignoring the BM25 index %s: %s; it will be rebuilt.", path, loaded)
            return None
        header, ids, hashes, arrays, vocab = loaded
        with self._lock:
            self._vocab = {token: token_id for token_id, token in enumerate(vocab)}
            self._tokens = dict(zip(ids, arrays))
            self._hashes = dict(zip(ids, hashes))
            self._matrix = None
            self._removed_rows = set()
            self._stale = True
        return header.get("extra", {})

    def _read(self, path: Path, expect: dict[str, Any]) -> Any:
        """The saved contents, or a string saying why they can't be used here."""
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            if not isinstance(header, dict) or header.get("format") != _FORMAT_VERSION:
                return f"saved in format {header.get('format') if isinstance(header, dict) else header!r}, this version reads {_FORMAT_VERSION}"
            if header.get("tokenizer") != self.tokenizer.signature or header.get("bm25") != self._bm25_params:
                return "saved with another tokenizer or BM25 setting"
            extra = header.get("extra") or {}
            for key, value in expect.items():
                if extra.get(key) != value:
                    return f"its {key} is {extra.get(key)!r}, not {value!r}"
            ids = data["ids"].tolist()
            hashes = data["hashes"].tolist()
            lengths = data["lengths"]
            flat = data["tokens"].astype(np.int32)
            vocab = data["vocab"].tolist()
        consistent = (
            len(ids) == len(hashes) == len(lengths) == len(set(ids))
            and int(lengths.sum()) == len(flat)
            and (lengths >= 0).all()
            and (len(flat) == 0 or (0 <= flat.min() and flat.max() < len(vocab)))
        )
        if not consistent:
            return "its arrays disagree with each other (damaged)"
        arrays = np.split(flat, np.cumsum(lengths)[:-1]) if ids else []
        return header, ids, hashes, arrays, vocab
