"""SciFact loading, MiniLM embeddings (cached on disk) and nDCG@10 for the hybrid benchmarks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_SCIFACT = ROOT.parent / "shared" / "data" / "scifact"


def load_scifact(directory: Path = DEFAULT_SCIFACT, split: str = "test"):
    """``(corpus {id: title + text}, queries {id: text} with judgments, qrels)`` via the eval loader."""
    from rerank_ext_core.evaluation.dataset import load_beir

    name = "qrels.tsv" if split == "test" else f"qrels_{split}.tsv"
    queries_file = "queries.jsonl" if split == "test" else f"queries_{split}.jsonl"
    data = load_beir(directory, queries_file=Path(directory) / queries_file, qrels_file=Path(directory) / name)
    return dict(zip(data.doc_ids, data.doc_texts)), data.queries, data.qrels


def ndcg_at_10(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> float:
    """nDCG@10 of ``{query_id: [doc_id, best first]}`` through the eval command's ir-measures path."""
    from rerank_ext_core.evaluation.metrics import evaluate_run

    return evaluate_run(qrels, run)[0]["nDCG@10"]


def embed_cached(embedder, texts: list[str], name: str) -> np.ndarray:
    """Embeddings of ``texts`` by ``embedder`` (a SentenceTransformerEmbedder), kept in the same
    on-disk cache as ``rerank-ext eval`` (keyed by the model's files and the texts)."""
    import hashlib

    from rerank_ext_core.evaluation.corpus_cache import CorpusEmbeddingCache, default_cache_dir, model_fingerprint

    cache = CorpusEmbeddingCache.for_corpus(
        default_cache_dir(),
        model_fingerprint=model_fingerprint(embedder.model_path),
        corpus_sha256=hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest(),
        encoding_settings={"normalize": embedder.normalize, "texts": name},
    )
    ids = [str(position) for position in range(len(texts))]
    vectors = cache.load(ids)
    if vectors is None:
        vectors = np.asarray(embedder.embed_documents(texts), dtype=np.float32)
        cache.save(ids, vectors, description={"texts": name})
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
