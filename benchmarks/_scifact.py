"""SciFact loading, MiniLM embeddings (cached on disk) and nDCG@10 for the hybrid benchmarks."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
CACHE_DIR = Path(os.environ.get("RERANK_EXT_CACHE", Path.home() / ".cache" / "rerank_ext"))


def load_scifact(directory: Path = DEFAULT_SCIFACT, split: str = "test"):
    corpus = {}
    with open(directory / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            corpus[record["_id"]] = (record.get("title", "") + " " + record.get("text", "")).strip()
    queries_all = {}
    with open(directory / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            queries_all[record["_id"]] = record["text"]
    qrels: dict[str, dict[str, int]] = {}
    name = "qrels.tsv" if split == "test" else f"qrels_{split}.tsv"
    with open(directory / name, encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        for row in reader:
            if row[0] in ("query-id", "query_id"):
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries = {qid: queries_all[qid] for qid in qrels if qid in queries_all}
    return corpus, queries, qrels


def ndcg_at_10(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> float:
    total = 0.0
    for qid, relevant in qrels.items():
        ranked = run.get(qid, [])[:10]
        dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked))
        ideal = sorted(relevant.values(), reverse=True)[:10]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        total += dcg / idcg if idcg else 0.0
    return total / len(qrels)


def embed_cached(embedder, texts: list[str], name: str) -> np.ndarray:
    """Embeddings of ``texts``, cached under ``name`` (keyed by the texts' digest)."""
    import hashlib

    digest = hashlib.sha1("\x00".join(texts).encode("utf-8")).hexdigest()[:16]
    path = CACHE_DIR / f"{name}-{digest}.npy"
    if path.exists():
        return np.load(path)
    vectors = np.asarray(embedder.embed_documents(texts), dtype=np.float32)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


class PrecomputedEmbedder:
    """An embedder that returns precomputed query vectors (the dense-embedding step is shared by
    every retriever compared, so benchmarks take it out)."""

    def __init__(self, vectors: dict[str, list[float]]):
        self.vectors = vectors

    def embed_query(self, text: str) -> list[float]:
        return self.vectors[text]

    def embed_documents(self, texts):
        return [self.vectors[t] for t in texts]

    async def aembed_query(self, text: str) -> list[float]:
        return self.vectors[text]

    async def aembed_documents(self, texts):
        return [self.vectors[t] for t in texts]
