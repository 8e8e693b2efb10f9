"""The encoded corpus cached on disk, keyed by the model's files and the corpus bytes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CorpusEmbeddingCache", "default_cache_dir", "model_fingerprint"]

logger = logging.getLogger(__name__)

_CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$RERANK_EXT_CACHE`` or ``$XDG_CACHE_HOME/rerank-ext`` (``~/.cache/rerank-ext``)."""
    if os.environ.get("RERANK_EXT_CACHE"):
        return Path(os.environ["RERANK_EXT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rerank-ext"


_fingerprints: dict[tuple, str] = {}
_fingerprints_lock = threading.Lock()


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino


def model_fingerprint(model_dir: str | Path) -> str:
    """sha256 over every file of a local model folder (names and contents). Remembered per folder
    while no file's name, size, times or inode change, so asking again costs a ``stat``
    per file instead of reading gigabytes."""
    root = Path(model_dir).resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts)
    stats = tuple((str(path.relative_to(root)), *_identity(path.stat())) for path in files)
    with _fingerprints_lock:
        known = _fingerprints.get((root, stats))
    if known is not None:
        return known
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        digest.update(b"\0")
    with _fingerprints_lock:
        _fingerprints[(root, stats)] = digest.hexdigest()
    return digest.hexdigest()


@dataclass(frozen=True)
class CorpusEmbeddingCache:
    """One cache entry: ``<key>.npy`` (float32 vectors, corpus order) and ``<key>.json`` (ids)."""

    directory: Path
    key: str

    @classmethod
    def for_corpus(
        cls,
        directory: str | Path,
        *,
        model_fingerprint: str,
        corpus_sha256: str,
        encoding_settings: dict,
    ) -> CorpusEmbeddingCache:
        payload = json.dumps(
            {
                "format": _CACHE_FORMAT,
                "model": model_fingerprint,
                "corpus": corpus_sha256,
                "settings": encoding_settings,
            },
            sort_keys=True,
        )
        key = hashlib.sha256(payload.encode()).hexdigest()[:32]
        return cls(Path(directory).expanduser() / "embeddings", key)

    @property
    def vectors_path(self) -> Path:
        return self.directory / f"{self.key}.npy"

    @property
    def meta_path(self) -> Path:
        return self.directory / f"{self.key}.json"

    def load(self, doc_ids: list[str]) -> np.ndarray | None:
        """The cached vectors, or None when there are none (or they don't match ``doc_ids``)."""
        if not (self.vectors_path.is_file() and self.meta_path.is_file()):
            return None
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            vectors = np.load(self.vectors_path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            logger.warning("Ignoring the unreadable embedding cache %s: %s", self.vectors_path, exc)
            return None
        if meta.get("doc_ids") != doc_ids or vectors.shape[0] != len(doc_ids):
            logger.warning("Ignoring the embedding cache %s: it holds other documents", self.vectors_path)
            return None
        return vectors

    def save(self, doc_ids: list[str], vectors: np.ndarray, *, description: dict) -> None:
        """Write both files atomically (temp file + rename): a crash never leaves half a cache."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for target, write in (
            (self.vectors_path, lambda handle: np.save(handle, np.asarray(vectors, dtype=np.float32))),
            (
                self.meta_path,
                lambda handle: handle.write(
                    json.dumps({"doc_ids": doc_ids, **description}).encode("utf-8")
                ),
            ),
        ):
            fd, tmp_name = tempfile.mkstemp(dir=self.directory, prefix=f".{target.name}.")
            try:
                with os.fdopen(fd, "wb") as handle:
                    write(handle)
                os.replace(tmp_name, target)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
