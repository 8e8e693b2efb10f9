"""The public face of the three packages: exports, lazy heavy imports, install hints."""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from rerank_ext_core._optional import require

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["rerank_ext_core", "llamaindex_rerank_ext", "langchain_rerank_ext"]
HEAVY = ["torch", "transformers", "sentence_transformers", "FlagEmbedding", "chromadb", "bm25s", "jieba", "Stemmer"]

ADAPTER_EXPORTS = ["ChromaHybridRetriever", "ColBERTReranker", "CrossEncoderReranker"]
EXPECTED_EXPORTS = {
    "rerank_ext_core": [
        "BM25Index", "ChromaEmbeddingFunction", "ChromaHybridSearch", "ChromaUnavailableError", "ColBERTScorer", "CrossEncoderScorer",
        "FUSION_MODES", "FusedResult", "HybridHit", "ModelNotFoundError", "QueryOptions", "RankedText", "Scorer",
        "SentenceTransformerEmbedder", "TextEmbedder", "Tokenizer", "distribution_based_score_fusion",
        "fuse", "maxsim_scores", "reciprocal_rank_fusion", "relative_score_fusion", "rerank",
    ],
    "llamaindex_rerank_ext": ADAPTER_EXPORTS,
    "langchain_rerank_ext": ADAPTER_EXPORTS,
}


@pytest.mark.parametrize("package", sorted(EXPECTED_EXPORTS))
def test_public_names_are_pinned_and_sorted(package):
    module = __import__(package)
    assert module.__all__ == EXPECTED_EXPORTS[package]
    assert all(hasattr(module, name) for name in module.__all__)


def test_both_adapters_export_the_same_class_names():
    import langchain_rerank_ext
    import llamaindex_rerank_ext

    assert set(llamaindex_rerank_ext.__all__) == set(langchain_rerank_ext.__all__)


@pytest.mark.parametrize("package", PACKAGES)
def test_importing_a_package_loads_no_heavy_library(package):
    code = f"import sys, {package}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def _declared_extras() -> set[str]:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return set(tomllib.load(handle)["project"]["optional-dependencies"])


def _named_extras() -> set[str]:
    names = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            source = path.read_text(encoding="utf-8")
            names.update(re.findall(r"rerank-ext\[([\w,-]+)\]", source))
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require":
                    names.update(k.value.value for k in node.keywords if k.arg == "extra" and isinstance(k.value, ast.Constant))
    return {name for group in names for name in group.split(",")}


def test_every_extra_named_in_an_error_message_exists():
    named = _named_extras()
    assert {"st", "flag"} <= named  # the scan itself finds the hints
    assert named <= _declared_extras(), named - _declared_extras()


@pytest.mark.parametrize(("package", "framework", "extra"), [("llamaindex_rerank_ext", "llama_index", "llamaindex"), ("langchain_rerank_ext", "langchain_core", "langchain")])
def test_an_adapter_without_its_framework_names_the_extra(package, framework, extra):
    code = (
        f"import sys; sys.modules[{framework!r}] = None\n"
        f"try:\n    import {package}\nexcept ImportError as e:\n    print(e)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert f"pip install 'rerank-ext[{extra}]'" in out.stdout, out.stdout + out.stderr


def test_missing_dependency_names_the_feature_and_the_extra():
    with pytest.raises(ImportError) as excinfo:
        require("surely_not_installed_pkg", feature="The flux reranker", extra="flag")
    message = str(excinfo.value)
    assert "The flux reranker" in message and "pip install 'rerank-ext[flag]'" in message
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__
