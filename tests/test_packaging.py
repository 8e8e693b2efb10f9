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
HEAVY = ["torch", "transformers", "sentence_transformers", "FlagEmbedding", "chromadb", "bm25s"]

EXPECTED_EXPORTS = {
    "llamaindex_rerank_ext": {"ColBERTReranker", "CrossEncoderReranker"},
    "langchain_rerank_ext": {"ColBERTReranker", "CrossEncoderReranker"},
}


@pytest.mark.parametrize("package", sorted(EXPECTED_EXPORTS))
def test_public_names_are_pinned(package):
    module = __import__(package)
    assert set(module.__all__) == EXPECTED_EXPORTS[package]
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
                    names.update(k.value.value for k in node.keywords if k.arg == "extra")
    return {name for group in names for name in group.split(",")}


def test_every_extra_named_in_an_error_message_exists():
    named = _named_extras()
    assert {"st", "flag"} <= named  # the scan itself finds the hints
    assert named <= _declared_extras(), named - _declared_extras()


def test_missing_dependency_names_the_feature_and_the_extra():
    with pytest.raises(ImportError) as excinfo:
        require("surely_not_installed_pkg", feature="The flux reranker", extra="flag")
    message = str(excinfo.value)
    assert "The flux reranker" in message and "pip install 'rerank-ext[flag]'" in message
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__
