"""require() tells the truth about why a heavy package can't be used, and backend='auto' skips a
broken backend instead of picking it. Fake packages on sys.path stand in for the real ones."""

from __future__ import annotations

import logging
import os
import sys
import textwrap

import pytest

from rerank_ext_core import cross_encoder
from rerank_ext_core._optional import (
    BrokenDependencyError,
    MissingDependencyError,
    first_loadable,
    require,
    supported_range,
)


@pytest.fixture
def fake_packages(tmp_path, monkeypatch):
    """Writes packages into a folder on sys.path; forgets them afterwards."""
    written: list[str] = []

    def write(name: str, source: str, *, version: str | None = None) -> None:
        package = tmp_path / name
        package.mkdir()
        (package / "__init__.py").write_text(textwrap.dedent(source), encoding="utf-8")
        if version is not None:  # an installed distribution, as pip leaves it
            info = tmp_path / f"{name}-{version}.dist-info"
            info.mkdir()
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
            (info / "top_level.txt").write_text(f"{name}\n")
        written.append(name)

    monkeypatch.syspath_prepend(str(tmp_path))
    yield write
    for name in written:
        sys.modules.pop(name, None)


def test_not_installed_names_the_extra():
    with pytest.raises(MissingDependencyError) as excinfo:
        require("surely_not_installed_pkg", feature="The flux reranker", extra="flag")
    message = str(excinfo.value)
    assert "'surely_not_installed_pkg', which is not installed" in message
    assert "pip install 'rerank-ext[flag]'" in message


def test_installed_but_broken_names_version_error_and_supported_range(fake_packages):
    # What FlagEmbedding 1.4.2 does under transformers 5.24: a submodule of an installed package is gone.
    fake_packages("fakeflag", "import json.modeling_attn_mask_utils\n", version="1.4.2")
    with pytest.raises(BrokenDependencyError) as excinfo:
        require("fakeflag", feature="CrossEncoderScorer(backend='flag')", extra="flag")
    message = str(excinfo.value)
    assert "'fakeflag', which is installed (version 1.4.2) but fails to import" in message
    assert "No module named 'json.modeling_attn_mask_utils'" in message
    assert "not installed" not in message  # the old, false advice
    assert "rerank-ext[flag] supports:" in message and "transformers" in message
    assert isinstance(excinfo.value.__cause__, ModuleNotFoundError)  # the real traceback stays reachable


def test_any_exception_at_import_is_reported_as_broken(fake_packages):
    fake_packages("fakeboom", "raise RuntimeError('CUDA driver too old')\n", version="0.3")
    with pytest.raises(BrokenDependencyError, match=r"version 0\.3\) but fails to import: RuntimeError: CUDA driver too old"):
        require("fakeboom", feature="X", extra="st")


def test_a_missing_dependency_of_an_installed_package_is_named(fake_packages):
    fake_packages("fakewrapper", "import surely_absent_dependency_xyz\n", version="2.0")
    with pytest.raises(MissingDependencyError) as excinfo:
        require("fakewrapper", feature="X", extra="st")
    message = str(excinfo.value)
    assert "'fakewrapper', which is installed (version 2.0)" in message
    assert "'surely_absent_dependency_xyz', is not" in message
    assert "pip install 'rerank-ext[st]'" in message


def test_supported_range_is_read_from_the_installed_metadata():
    ranges = supported_range("flag")
    assert ranges["flagembedding"].startswith(">=") or "<" in ranges["flagembedding"]
    assert "<5.24" in ranges["transformers"]  # the exclusion that pyproject.toml states


def test_auto_skips_a_broken_backend_with_a_warning(fake_packages, monkeypatch, caplog):
    fake_packages("fakebrokenst", "import json.removed_in_this_release\n", version="9.9")
    fake_packages("fakeworking", "VALUE = 1\n", version="1.0")
    choices = (("sentence-transformers", "fakebrokenst", "st"), ("flag", "fakeworking", "flag"))
    with caplog.at_level(logging.WARNING, logger="rerank_ext_core._optional"):
        backend, module = first_loadable(choices, feature="CrossEncoderScorer")
    assert backend == "flag" and module.VALUE == 1
    assert any("skips 'sentence-transformers'" in r.message and "removed_in_this_release" in r.message for r in caplog.records)


def test_auto_with_nothing_loadable_explains_every_backend(fake_packages, monkeypatch):
    fake_packages("fakebrokenst2", "raise ImportError('bad build')\n", version="1.0")
    monkeypatch.setattr(
        cross_encoder, "AUTO_BACKEND_ORDER",
        (("sentence-transformers", "fakebrokenst2", "st"), ("flag", "surely_not_installed_pkg", "flag")),
    )
    with pytest.raises(BrokenDependencyError) as excinfo:
        cross_encoder.CrossEncoderScorer("/nonexistent-model", backend="auto")
    message = str(excinfo.value)
    assert "found no backend that loads" in message and "bad build" in message
    assert "'surely_not_installed_pkg', which is not installed" in message


def test_the_real_auto_order_picks_a_backend_that_imports():
    backend, module = first_loadable(cross_encoder.AUTO_BACKEND_ORDER, feature="CrossEncoderScorer")
    assert backend in {"sentence-transformers", "flag"} and module.__name__ in sys.modules


def test_bm25s_is_imported_without_jax_and_jax_stays_importable(tmp_path):
    """bm25s runs a jax op when it is imported and jax is installed: jax would then take 75% of
    every GPU. A fake jax records whether it was imported; a fresh interpreter imports bm25s."""
    import subprocess

    pytest.importorskip("bm25s")
    (tmp_path / "jax").mkdir()
    (tmp_path / "jax" / "__init__.py").write_text(
        "import os\nopen(os.environ['JAX_MARKER'], 'a').write('imported\\n')\n", encoding="utf-8")
    (tmp_path / "jax" / "lax.py").write_text("def top_k(scores, k):\n    return scores, k\n", encoding="utf-8")
    marker = tmp_path / "marker"
    script = (
        "import sys\n"
        "from rerank_ext_core._optional import require\n"
        "bm25s = require('bm25s', feature='BM25', extra='bm25')\n"
        "assert 'jax' not in sys.modules, 'jax was imported, or left hidden'\n"
        "import bm25s.selection\n"
        "assert bm25s.selection.JAX_IS_AVAILABLE is False, 'bm25s saw jax'\n"
        "import jax  # the program's own import still works\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), "JAX_MARKER": str(marker)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert marker.read_text() == "imported\n"  # once: by the program, never by bm25s
