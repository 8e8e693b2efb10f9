"""What fine-tuning reads: training queries with positives, from a BEIR folder, FlagEmbedding's
fine-tune JSONL, or a Chroma collection plus a JSONL of ``{"query", "pos_ids"}``.

Every loader checks everything before training starts; an error names the file and line (or the
query and document id) and says how to fix it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from rerank_ext_core import chroma
from rerank_ext_core.evaluation.dataset import EvalInputError, load_beir

__all__ = [
    "Corpus",
    "DevQuery",
    "FinetuneInputError",
    "TrainingGroup",
    "TrainingQuery",
    "load_beir_training",
    "load_chroma_training",
    "load_flag_jsonl",
    "write_flag_jsonl",
]


class FinetuneInputError(EvalInputError):
    """The training input is missing or malformed; the message says where and how to fix it."""


@dataclass(frozen=True)
class TrainingQuery:
    """A query whose positives are document ids of a corpus (negatives still to be mined)."""

    query_id: str
    text: str
    positive_ids: tuple[str, ...]


class DevQuery(NamedTuple):
    """A dev-split query: its positives and its first-stage candidates (texts), best first, with
    the first stage's scores when the candidates came from a retriever."""

    query: str
    positives: list[str]
    candidates: list[str]
    first_stage_scores: list[float] | None = None


@dataclass(frozen=True)
class TrainingGroup:
    """One FlagEmbedding fine-tune line: a query, its positive texts and negative texts."""

    query: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]
    prompt: str | None = None
    pos_scores: tuple[float, ...] | None = None
    neg_scores: tuple[float, ...] | None = None
    query_id: str | None = None
    negative_ids: tuple[str, ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {"query": self.query, "pos": list(self.positives), "neg": list(self.negatives)}
        if self.prompt is not None:
            line["prompt"] = self.prompt
        if self.pos_scores is not None:
            line["pos_scores"] = list(self.pos_scores)
        if self.neg_scores is not None:
            line["neg_scores"] = list(self.neg_scores)
        return line


class Corpus:
    """Document ids and texts (what negatives are mined from)."""

    def __init__(self, ids: list[str], texts: list[str], *, fingerprint: str | None = None) -> None:
        self.ids = list(ids)
        self.texts = list(texts)
        self._text_of = dict(zip(self.ids, self.texts))
        self.fingerprint = fingerprint or hashlib.sha256("\x00".join(self.texts).encode("utf-8")).hexdigest()
        """Keys the cached corpus vectors (a BEIR folder's: the same as ``rerank-ext eval``'s)."""

    def text(self, doc_id: str) -> str:
        return self._text_of[doc_id]

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._text_of

    def __len__(self) -> int:
        return len(self.ids)


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        msg = f"{path} does not exist. Pass a JSONL file with one JSON object per line."
        raise FinetuneInputError(msg)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                msg = f"{path}:{number}: the line is empty. Remove it: every line must be one JSON object."
                raise FinetuneInputError(msg)
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                msg = f"{path}:{number}: not valid JSON ({exc}). Every line must be one JSON object."
                raise FinetuneInputError(msg) from None
            if not isinstance(row, dict):
                msg = f"{path}:{number}: expected a JSON object, found {type(row).__name__}."
                raise FinetuneInputError(msg)
            yield number, row


def _text_field(path: Path, number: int, row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value.strip():
        msg = f"{path}:{number}: the field {name!r} must be a non-empty string, found {value!r:.60}."
        raise FinetuneInputError(msg)
    return value


def _text_list(path: Path, number: int, row: Mapping[str, Any], name: str, *, allow_empty: bool) -> tuple[str, ...]:
    value = row.get(name, [] if allow_empty else None)
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        msg = f"{path}:{number}: the field {name!r} must be a list of non-empty strings, found {value!r:.80}."
        raise FinetuneInputError(msg)
    if not value and not allow_empty:
        msg = f"{path}:{number}: the query has no positive ({name!r} is empty); give it at least one, or drop the line."
        raise FinetuneInputError(msg)
    return tuple(value)


def _scores(path: Path, number: int, row: Mapping[str, Any], name: str, expected: int) -> tuple[float, ...] | None:
    value = row.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != expected
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        msg = f"{path}:{number}: {name!r} must be a list of {expected} finite numbers (one per text), found {value!r:.80}."
        raise FinetuneInputError(msg)
    return tuple(float(v) for v in value)


def load_flag_jsonl(path: str | Path) -> list[TrainingGroup]:
    """FlagEmbedding's reranker fine-tune format, exactly as it reads it: ``query``, ``pos``,
    ``neg``, and optionally ``prompt``, ``pos_scores``, ``neg_scores``."""
    path = Path(path)
    groups: list[TrainingGroup] = []
    for number, row in _json_lines(path):
        query = _text_field(path, number, row, "query")
        positives = _text_list(path, number, row, "pos", allow_empty=False)
        negatives = _text_list(path, number, row, "neg", allow_empty=True)
        prompt = row.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            msg = f"{path}:{number}: 'prompt' must be a string, found {prompt!r:.60}."
            raise FinetuneInputError(msg)
        groups.append(TrainingGroup(
            query, positives, negatives, prompt,
            _scores(path, number, row, "pos_scores", len(positives)),
            _scores(path, number, row, "neg_scores", len(negatives)),
            query_id=f"line{number}",
        ))
    if not groups:
        msg = f"{path} has no training lines."
        raise FinetuneInputError(msg)
    return groups


def write_flag_jsonl(groups: list[TrainingGroup], path: str | Path) -> Path:
    """Write groups in FlagEmbedding's fine-tune format (its own trainer reads the file as is)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for group in groups:
            handle.write(json.dumps(group.to_json(), ensure_ascii=False) + "\n")
    return path


def load_beir_training(
    root: str | Path, *, queries_file: str | Path | None = None, qrels_file: str | Path | None = None
) -> tuple[Corpus, list[TrainingQuery]]:
    """A BEIR folder's corpus with training queries and qrels (default: ``queries_train.jsonl`` and
    ``qrels_train.tsv`` beside ``corpus.jsonl``). Positives are the judgments with a grade > 0."""
    root = Path(root)
    queries_path = Path(queries_file) if queries_file else root / "queries_train.jsonl"
    qrels_path = Path(qrels_file) if qrels_file else root / "qrels_train.tsv"
    dataset = load_beir(root, queries_file=queries_path, qrels_file=qrels_path, strict=True)
    corpus = Corpus(dataset.doc_ids, dataset.doc_texts, fingerprint=dataset.corpus_sha256)
    queries = [
        TrainingQuery(query_id, text, tuple(doc_id for doc_id, grade in dataset.qrels[query_id].items() if grade > 0))
        for query_id, text in dataset.queries.items()
    ]
    return corpus, queries


def load_chroma_training(collection: Any, path: str | Path) -> tuple[Corpus, list[TrainingQuery]]:
    """A Chroma collection (the corpus, negatives mined from it) and a JSONL of
    ``{"query": ..., "pos_ids": [...]}`` naming positives by Chroma id."""
    path = Path(path)
    rows = list(_json_lines(path))
    ids: list[str] = []
    texts: list[str] = []
    for page in chroma.iter_pages(collection, include=["documents"]):
        for doc_id, text in zip(page["ids"], page["documents"]):
            if isinstance(text, str) and text.strip():
                ids.append(doc_id)
                texts.append(text)
    corpus = Corpus(ids, texts)
    queries: list[TrainingQuery] = []
    for number, row in rows:
        query = _text_field(path, number, row, "query")
        positives = _text_list(path, number, row, "pos_ids", allow_empty=False)
        unknown = [doc_id for doc_id in positives if doc_id not in corpus]
        if unknown:
            msg = (
                f"{path}:{number}: the positive id {unknown[0]!r} is not in the collection "
                f"{collection.name!r} (or has no text). Use the ids the collection stores."
            )
            raise FinetuneInputError(msg)
        queries.append(TrainingQuery(f"line{number}", query, positives))
    if not queries:
        msg = f"{path} has no training lines."
        raise FinetuneInputError(msg)
    return corpus, queries
