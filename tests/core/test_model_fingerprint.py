"""The model fingerprint (the key of the embedding, export and ColBERT-store caches) is computed once
per unchanged folder and recomputed when a file changes."""

from __future__ import annotations

from pathlib import Path

from rerank_ext_core.evaluation import corpus_cache
from rerank_ext_core.evaluation.corpus_cache import model_fingerprint


def test_an_unchanged_folder_is_not_read_again_and_a_changed_one_is(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"\x01" * 1000)
    first = model_fingerprint(tmp_path)
    reads: list[str] = []
    original = Path.open

    def counting_open(self, *args, **kwargs):
        reads.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_open)
    assert model_fingerprint(tmp_path) == first and reads == []
    (tmp_path / "model.safetensors").write_bytes(b"\x02" * 1000)  # same size, new content
    changed = model_fingerprint(tmp_path)
    assert changed != first and "model.safetensors" in reads
    corpus_cache._fingerprints.clear()
    assert model_fingerprint(tmp_path) == changed  # the memo never changes the value
