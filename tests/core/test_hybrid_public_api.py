from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import langchain_rerank_ext
import llamaindex_rerank_ext
import rerank_ext_core

ROOT = Path(__file__).resolve().parents[2]
HYBRID_NAMES = {
    "BM25Index", "ChromaHybridSearch", "ChromaUnavailableError", "FUSION_MODES", "FusedResult",
    "HybridHit", "SentenceTransformerEmbedder", "TextEmbedder", "Tokenizer",
    "distribution_based_score_fusion", "fuse", "reciprocal_rank_fusion", "relative_score_fusion",
}


def test_hybrid_names_are_exported_sorted():
    assert HYBRID_NAMES <= set(rerank_ext_core.__all__)
    for module in (rerank_ext_core, llamaindex_rerank_ext, langchain_rerank_ext):
        assert module.__all__ == sorted(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), name
    assert "ChromaHybridRetriever" in llamaindex_rerank_ext.__all__
    assert "ChromaHybridRetriever" in langchain_rerank_ext.__all__


def test_importing_the_adapters_loads_no_heavy_backend():
    code = (
        "import sys, llamaindex_rerank_ext, langchain_rerank_ext; "
        "print(sorted(m for m in ('torch', 'chromadb', 'bm25s', 'jieba', 'Stemmer', "
        "'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_extras_named_in_hybrid_modules_exist():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = set()
    for name in ("tokenization", "bm25", "embedding", "hybrid", "chroma"):
        named |= set(re.findall(r'extra="([^"]+)"', (ROOT / "rerank_ext_core" / f"{name}.py").read_text()))
    assert named and named <= extras
