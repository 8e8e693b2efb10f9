"""Corpora the examples use offline: Python's own documentation topics, or a folder of text files."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LANGUAGE_TOPICS", "Chunk", "corpus_fingerprint", "folder_chunks", "python_topic_chunks"]

LANGUAGE_TOPICS = (
    "assignment", "compound", "context-managers", "exceptions", "execmodel", "for", "function",
    "global", "if", "import", "lambda", "naming", "nonlocal", "try", "while", "with",
)
"""A few hundred paragraphs on statements, scopes and exceptions: small enough to embed quickly."""

_PARAGRAPH = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    source: str


def _paragraphs(text: str, *, min_chars: int = 80, max_chars: int = 1200) -> list[str]:
    """Paragraphs of a document, short ones merged into the next, long ones cut at sentence ends."""
    out: list[str] = []
    pending = ""
    for paragraph in _PARAGRAPH.split(text):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        pending = f"{pending} {paragraph}".strip()
        if len(pending) < min_chars:
            continue
        while len(pending) > max_chars:
            cut = pending.rfind(". ", 0, max_chars)
            cut = cut + 1 if cut > min_chars else max_chars
            out.append(pending[:cut].strip())
            pending = pending[cut:].strip()
        if pending:
            out.append(pending)
        pending = ""
    if pending:
        out.append(pending)
    return out


def python_topic_chunks(topics_wanted: tuple[str, ...] | None = None) -> list[Chunk]:
    """Paragraphs of the topic texts behind ``help('TOPIC')``, shipped with CPython (pydoc_data).

    Several topics repeat the same paragraphs (``with`` is also in ``compound``): each text is kept
    once, under the first topic that has it. ``topics_wanted`` keeps only those topics.
    """
    from pydoc_data.topics import topics

    seen: set[str] = set()
    chunks: list[Chunk] = []
    for topic in sorted(topics_wanted or topics):
        for i, paragraph in enumerate(_paragraphs(topics[topic])):
            if paragraph not in seen:
                seen.add(paragraph)
                chunks.append(Chunk(f"{topic}:{i}", paragraph, f"pydoc_data.topics[{topic!r}]"))
    return chunks


def folder_chunks(folder: str | Path) -> list[Chunk]:
    """Paragraphs of every .txt, .md and .rst file under ``folder``."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        msg = f"--corpus {root} is not a folder. Point it to a folder holding .txt, .md or .rst files."
        raise SystemExit(msg)
    chunks: list[Chunk] = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in {".txt", ".md", ".rst"} and p.is_file()):
        text = path.read_text(encoding="utf-8", errors="replace")
        relative = str(path.relative_to(root))
        chunks += [Chunk(f"{relative}:{i}", p, relative) for i, p in enumerate(_paragraphs(text))]
    if not chunks:
        msg = f"--corpus {root} holds no .txt, .md or .rst file with text in it."
        raise SystemExit(msg)
    return chunks


def corpus_fingerprint(chunks: list[Chunk], *extra: str) -> str:
    digest = hashlib.sha256()
    for part in (*extra, *(f"{c.id}\0{c.text}" for c in chunks)):
        digest.update(part.encode("utf-8"))
        digest.update(b"\1")
    return digest.hexdigest()[:16]
