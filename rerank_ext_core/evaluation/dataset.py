"""The evaluation's input: a BEIR-layout folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv``),
loaded and validated."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from rerank_ext_core._files import file_sha256

__all__ = ["BeirDataset", "EvalInputError", "find_qrels_file", "load_beir", "read_qrels"]

logger = logging.getLogger(__name__)


class EvalInputError(ValueError):
    """The evaluation input is missing or malformed; the message says where and how to fix it."""


@dataclass(frozen=True)
class BeirDataset:
    """A corpus, the queries that have relevance judgments, and those judgments (graded allowed)."""

    root: Path
    doc_ids: list[str]
    doc_texts: list[str]
    """``title + " " + text``, the BEIR convention for both sparse and dense retrieval."""
    queries: dict[str, str]
    """Only the queries that have at least one judgment: these are the ones evaluated."""
    qrels: dict[str, dict[str, int]]
    corpus_sha256: str
    stats: dict[str, int] = field(default_factory=dict)
    """Counts of what was read and what was dropped (queries without judgments, unknown ids)."""


def _read_jsonl(path: Path, *, required: tuple[str, ...], text_fields: tuple[str, ...]) -> list[dict]:
    rows: list[dict] = []
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                msg = (
                    f"{path}:{line_number}: not a JSON object ({exc}). Each line of a BEIR "
                    f"{path.name} must be one JSON object with the fields {', '.join(required)}."
                )
                raise EvalInputError(msg) from None
            if not isinstance(row, dict):
                msg = (
                    f"{path}:{line_number}: expected a JSON object, found {type(row).__name__}. "
                    f"Each line must look like {{{', '.join(f'{name!r}: ...' for name in required)}}}."
                )
                raise EvalInputError(msg)
            for name in required:
                if name not in row:
                    msg = (
                        f"{path}:{line_number}: the field {name!r} is missing (found "
                        f"{sorted(row)}). Each line of {path.name} needs {', '.join(required)}."
                    )
                    raise EvalInputError(msg)
            for name in text_fields:
                value = row.get(name)
                if value is not None and not isinstance(value, str):
                    msg = (
                        f"{path}:{line_number}: the field {name!r} must be a string, found "
                        f"{type(value).__name__} {value!r:.60}."
                    )
                    raise EvalInputError(msg)
            row["_id"] = str(row["_id"])
            row["_line"] = line_number
            rows.append(row)
    return rows


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Read ``query-id corpus-id score`` (tab-separated, optional header) or TREC ``qid 0 docid rel``."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            parts = [part.strip() for part in parts]
            if len(parts) == 4:  # TREC qrels: qid iteration docid relevance
                parts = [parts[0], parts[2], parts[3]]
            if len(parts) != 3:
                msg = (
                    f"{path}:{line_number}: expected 3 tab-separated columns "
                    f"(query-id, corpus-id, score), found {len(parts)}: {line.rstrip()!r:.80}."
                )
                raise EvalInputError(msg)
            query_id, doc_id, grade = parts
            try:
                relevance = int(float(grade))
            except ValueError:
                if line_number == 1:  # the BEIR header "query-id corpus-id score"
                    continue
                msg = (
                    f"{path}:{line_number}: the score {grade!r} is not a number. Relevance "
                    "grades are integers (0 = not relevant, 1, 2, ... = more relevant)."
                )
                raise EvalInputError(msg) from None
            qrels.setdefault(query_id, {})[doc_id] = relevance
    return qrels


def find_qrels_file(root: Path) -> Path:
    """``qrels.tsv``, or BEIR's own ``qrels/test.tsv``."""
    for candidate in (root / "qrels.tsv", root / "qrels" / "test.tsv"):
        if candidate.is_file():
            return candidate
    return root / "qrels.tsv"


def _require_file(path: Path) -> None:
    if not path.is_file():
        msg = (
            f"{path} does not exist. A BEIR folder holds corpus.jsonl ({{'_id', 'title', 'text'}} "
            "per line), queries.jsonl ({'_id', 'text'} per line) and qrels.tsv "
            "(query-id, corpus-id, score)."
        )
        raise EvalInputError(msg)


def _check_training_judgments(
    query_id: str, judged: dict[str, int], queries: dict[str, str], known_docs: set[str], qrels_path: Path,
    corpus_path: Path,
) -> None:
    positives = [doc_id for doc_id, grade in judged.items() if grade > 0]
    if not positives:
        msg = f"{qrels_path}: the query {query_id!r} has no positive judgment (grade > 0); drop it or judge one document relevant."
        raise EvalInputError(msg)
    unknown = [doc_id for doc_id in positives if doc_id not in known_docs]
    if unknown:
        msg = f"{qrels_path}: the query {query_id!r} names the positive {unknown[0]!r}, which is not in {corpus_path}."
        raise EvalInputError(msg)
    if query_id not in queries:
        msg = f"{qrels_path}: the query {query_id!r} is judged but not in the queries file."
        raise EvalInputError(msg)


def load_beir(
    root: str | Path,
    *,
    queries_file: str | Path | None = None,
    qrels_file: str | Path | None = None,
    max_queries: int | None = None,
    strict: bool = False,
) -> BeirDataset:
    """Read a BEIR folder, keep the queries that have judgments, and count everything dropped.

    ``strict`` (training data) refuses instead of dropping: a judged query that is not in the
    queries file or has no positive, and a positive that names a document not in the corpus."""
    root = Path(root).expanduser()
    if not root.is_dir():
        msg = f"The dataset folder {root} does not exist. Pass a folder in BEIR layout."
        raise EvalInputError(msg)
    corpus_path = root / "corpus.jsonl"
    queries_path = Path(queries_file) if queries_file else root / "queries.jsonl"
    qrels_path = Path(qrels_file) if qrels_file else find_qrels_file(root)
    for path in (corpus_path, queries_path, qrels_path):
        _require_file(path)

    doc_ids: list[str] = []
    doc_texts: list[str] = []
    seen_lines: dict[str, int] = {}
    empty_docs = 0
    for row in _read_jsonl(corpus_path, required=("_id",), text_fields=("title", "text")):
        doc_id = row["_id"]
        if doc_id in seen_lines:
            msg = (
                f"{corpus_path}:{row['_line']}: the document id {doc_id!r} was already used on line "
                f"{seen_lines[doc_id]}. Document ids must be unique."
            )
            raise EvalInputError(msg)
        seen_lines[doc_id] = row["_line"]
        text = f"{row.get('title') or ''} {row.get('text') or ''}".strip()
        if not text:
            empty_docs += 1
        doc_ids.append(doc_id)
        doc_texts.append(text)
    if not doc_ids:
        msg = f"The corpus {corpus_path} has no documents. Put one JSON object per line in it."
        raise EvalInputError(msg)
    if empty_docs:
        logger.warning("%d documents in %s have no title and no text", empty_docs, corpus_path)

    all_queries = {
        row["_id"]: (row.get("text") or "")
        for row in _read_jsonl(queries_path, required=("_id", "text"), text_fields=("text",))
    }
    qrels_all = read_qrels(qrels_path)
    known_docs = set(seen_lines)
    qrels: dict[str, dict[str, int]] = {}
    unknown_docs = 0
    for query_id, judged in qrels_all.items():
        if strict:
            _check_training_judgments(query_id, judged, all_queries, known_docs, qrels_path, corpus_path)
        if query_id not in all_queries:
            continue
        kept = {doc_id: grade for doc_id, grade in judged.items() if doc_id in known_docs}
        unknown_docs += len(judged) - len(kept)
        if any(grade > 0 for grade in kept.values()):
            qrels[query_id] = kept
    qrels_without_query = sum(1 for query_id in qrels_all if query_id not in all_queries)
    queries = {qid: text for qid, text in all_queries.items() if qid in qrels}
    queries_without_qrels = len(all_queries) - len(queries)
    if queries_without_qrels:
        logger.warning(
            "%d of %d queries have no relevant document in %s and are skipped",
            queries_without_qrels, len(all_queries), qrels_path.name,
        )
    if unknown_docs:
        logger.warning("%d judgments name documents that are not in the corpus; ignored", unknown_docs)
    if max_queries is not None:
        queries = dict(list(queries.items())[:max_queries])
        qrels = {qid: qrels[qid] for qid in queries}
    if not queries:
        msg = (
            f"No query in {queries_path} has a relevant document in {qrels_path} "
            f"({len(all_queries)} queries read, {len(qrels_all)} query ids in the qrels). The query "
            "ids in qrels.tsv must match the '_id' fields of queries.jsonl, and the corpus ids "
            "those of corpus.jsonl."
        )
        raise EvalInputError(msg)
    return BeirDataset(
        root=root,
        doc_ids=doc_ids,
        doc_texts=doc_texts,
        queries=queries,
        qrels=qrels,
        corpus_sha256=file_sha256(corpus_path),
        stats={
            "documents": len(doc_ids),
            "queries_read": len(all_queries),
            "queries_evaluated": len(queries),
            "queries_without_qrels": queries_without_qrels,
            "qrels_without_query": qrels_without_query,
            "qrels_unknown_docs": unknown_docs,
            "empty_documents": empty_docs,
        },
    )
