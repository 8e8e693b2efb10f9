"""``rerank-ext eval``: clear messages and non-zero exits for bad input, outputs, and the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerank_ext_core import cli
from rerank_ext_core.evaluation import EvalConfig, run_evaluation
from rerank_ext_core.evaluation.first_stage import CorpusEncoder
from rerank_ext_core.fusion import FUSION_MODES

pytest.importorskip("ir_measures")

CORPUS = [
    {"_id": "d1", "title": "Red foxes", "text": "The red fox hunts small rodents at dusk."},
    {"_id": "d2", "title": "Ocean tides", "text": "Tides are caused by the gravity of the moon."},
    {"_id": "d3", "title": "Photosynthesis", "text": "Plants turn sunlight, water and CO2 into sugar."},
    {"_id": "d4", "title": "Volcanoes", "text": "Magma rises through the crust and erupts as lava."},
    {"_id": "d5", "title": "Bees", "text": "Honey bees pollinate flowers and make honey."},
    {"_id": "d6", "title": "", "text": "Glaciers carve valleys as they slowly move downhill."},
]
QUERIES = [
    {"_id": "q1", "text": "what do red foxes eat"},
    {"_id": "q2", "text": "why does the moon cause tides"},
    {"_id": "q3", "text": "how do plants make sugar from light"},
    {"_id": "q4", "text": "a query nobody judged"},
]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq3\td3\t1\nq3\td5\t0\n"


def write_beir(folder: Path, *, corpus=CORPUS, queries=QUERIES, qrels=QRELS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in queries))
    (folder / "qrels.tsv").write_text(qrels)
    return folder


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["eval", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clean_failure(code: int, err: str, *needles: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_missing_file_names_the_file(tmp_path, capsys):
    folder = write_beir(tmp_path / "data")
    (folder / "qrels.tsv").unlink()
    code, _, err = run_cli(capsys, str(folder), "-o", str(tmp_path / "out"))
    assert_clean_failure(code, err, str(folder / "qrels.tsv"), "does not exist")


def test_missing_folder(tmp_path, capsys):
    code, _, err = run_cli(capsys, str(tmp_path / "nowhere"))
    assert_clean_failure(code, err, "nowhere", "does not exist")


def test_malformed_corpus_line_reports_file_and_line(tmp_path, capsys):
    folder = write_beir(tmp_path / "data")
    lines = (folder / "corpus.jsonl").read_text().splitlines()
    lines[2] = '{"_id": "d3", "title": "broken'
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(capsys, str(folder))
    assert_clean_failure(code, err, f"{folder / 'corpus.jsonl'}:3:", "not a JSON object")


def test_query_line_without_id_reports_line(tmp_path, capsys):
    folder = write_beir(tmp_path / "data", queries=[QUERIES[0], {"text": "no id here"}])
    code, _, err = run_cli(capsys, str(folder))
    assert_clean_failure(code, err, f"{folder / 'queries.jsonl'}:2:", "'_id' is missing")


def test_malformed_qrels_line_reports_line(tmp_path, capsys):
    folder = write_beir(tmp_path / "data", qrels=QRELS + "q1\td2\n")
    code, _, err = run_cli(capsys, str(folder))
    assert_clean_failure(code, err, f"{folder / 'qrels.tsv'}:6:", "expected 3 tab-separated columns")


def test_non_numeric_grade_reports_line(tmp_path, capsys):
    folder = write_beir(tmp_path / "data", qrels=QRELS + "q1\td2\tvery\n")
    code, _, err = run_cli(capsys, str(folder))
    assert_clean_failure(code, err, f"{folder / 'qrels.tsv'}:6:", "'very' is not a number")


def test_duplicate_document_id_reports_both_lines(tmp_path, capsys):
    folder = write_beir(tmp_path / "data", corpus=[*CORPUS, CORPUS[0]])
    code, _, err = run_cli(capsys, str(folder))
    assert_clean_failure(code, err, f"{folder / 'corpus.jsonl'}:7:", "already used on line 1")


def test_empty_corpus(tmp_path, capsys):
    folder = write_beir(tmp_path / "data", corpus=[])
    code, _, err = run_cli(capsys, str(folder))
    assert_clean_failure(code, err, "has no documents")


def test_no_query_has_judgments(tmp_path, capsys):
    folder = write_beir(tmp_path / "data", qrels="query-id\tcorpus-id\tscore\nq9\td1\t1\n")
    code, _, err = run_cli(capsys, str(folder))
    assert_clean_failure(code, err, "No query", "has a relevant document")


def test_bad_reranker_spec(tmp_path, capsys):
    folder = write_beir(tmp_path / "data")
    code, _, err = run_cli(capsys, str(folder), "--reranker", "splade:/models/x")
    assert_clean_failure(code, err, "'splade:/models/x'", "cross-encoder, colbert")


def test_unknown_fusion_mode(tmp_path, capsys):
    folder = write_beir(tmp_path / "data")
    code, _, err = run_cli(capsys, str(folder), "--fusion", "rrf,borda")
    assert_clean_failure(code, err, "'borda'")


def test_embedding_model_that_does_not_exist(tmp_path, capsys):
    folder = write_beir(tmp_path / "data")
    code, _, err = run_cli(capsys, str(folder), "--model", str(tmp_path / "no-model"))
    assert_clean_failure(code, err, "no-model", "is not a directory")


def test_a_device_this_machine_lacks_is_refused_before_any_output(tmp_path, capsys):
    folder = write_beir(tmp_path / "data")
    code, _, err = run_cli(capsys, str(folder), "-o", str(tmp_path / "out"), "--device", "cuda:999")
    assert_clean_failure(code, err, "device='cuda:999'", "'cpu', 'cuda'")
    assert not (tmp_path / "out").exists()


@pytest.fixture
def encode_calls(monkeypatch):
    """Counts how many texts the corpus encoder is asked to encode."""
    calls: list[int] = []
    original = CorpusEncoder.encode

    def counting_encode(self, texts, **kwargs):
        calls.append(len(texts))
        return original(self, texts, **kwargs)

    monkeypatch.setattr(CorpusEncoder, "encode", counting_encode)
    return calls


def test_outputs_counts_and_the_encoding_cache(tmp_path, minilm_path, encode_calls):
    folder = write_beir(tmp_path / "data")
    config = EvalConfig(
        dataset=folder, output_dir=tmp_path / "out", model=minilm_path,
        cache_dir=tmp_path / "cache", k=5, progress=False,
    )

    first = run_evaluation(config)

    assert encode_calls == [len(CORPUS)]
    assert first.results["encoding"]["cache_hit"] is False
    stats = first.results["dataset"]
    assert stats["queries_evaluated"] == 3
    assert stats["queries_without_qrels"] == 1  # q4 has no judgment
    names = [stage["name"] for stage in first.results["stages"]]
    assert names == ["bm25", "dense"] + [f"hybrid:{mode}" for mode in FUSION_MODES]
    table = first.output_files["markdown"].read_text()
    for name in names:
        assert f"| {name} |" in table
    assert first.output_files["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(first.output_files["json"].read_text())
    assert saved["stages"][1]["metrics"] == first.results["stages"][1]["metrics"]
    # Each of these queries shares its relevant document's words: dense finds all three first.
    assert first.results["stages"][1]["metrics"]["RR@10"] == 1.0

    second = run_evaluation(config)

    assert encode_calls == [len(CORPUS)], "the second run encoded the corpus again"
    assert second.results["encoding"]["cache_hit"] is True
    assert second.results["stages"][1]["metrics"] == first.results["stages"][1]["metrics"]

    # Changed data: a new cache entry, so the corpus is encoded again.
    write_beir(folder, corpus=[*CORPUS, {"_id": "d7", "title": "New", "text": "A new document."}])
    third = run_evaluation(config)
    assert encode_calls == [len(CORPUS), len(CORPUS) + 1]
    assert third.results["encoding"]["cache_hit"] is False


def test_the_command_leaves_logging_as_it_found_it(tmp_path, capsys):
    import logging

    package_logger = logging.getLogger("rerank_ext_core")
    before = (list(package_logger.handlers), package_logger.level, package_logger.propagate)
    run_cli(capsys, str(tmp_path / "nowhere"))
    assert (list(package_logger.handlers), package_logger.level, package_logger.propagate) == before
