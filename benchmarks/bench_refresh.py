"""Query latency while another process writes: the background refresher against checks on the
query path, and the cost of one id scan against collection size.

    python benchmarks/bench_refresh.py [--documents 100000] [--seconds 60]

A `chroma run` server on 127.0.0.1 holds a collection of ``--documents`` short synthetic texts
(16-d random embeddings). For each mode, in turn, this process runs back-to-back hybrid queries for
``--seconds`` while a second process adds a document every 50 ms through its own HttpClient. It
prints p50 / p95 / p99 / max query latency per mode and the p99 / p50 ratio (goal: <= 3 with the
background refresher), then the time of one id scan at several sizes; sizes beyond the collection
are extrapolated from the per-page cost measured on it (stated as such).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

WORDS = ("protein cell gene tumor virus immune receptor kinase signal brain insulin vaccine dose trial "
         "mutation enzyme membrane neuron cortex bacteria antibody plasma lipid glucose oxygen").split()
DIM = 16


class RandomEmbedder:
    """Deterministic 16-d vectors from the text's hash: cheap, so latency is the engine's."""

    def __call__(self, input):  # noqa: A002  (chromadb's EmbeddingFunction signature)
        return self.embed_documents(list(input))

    def name(self) -> str:
        return "bench-random"

    def embed_documents(self, texts):
        return [self._vector(t) for t in texts]

    def embed_query(self, text):
        return self._vector(text)

    @staticmethod
    def _vector(text):
        rng = random.Random(hash(text) & 0xFFFFFFFF)
        return [rng.uniform(-1, 1) for _ in range(DIM)]


def text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(12))


def build(client, name: str, documents: int):
    collection = client.create_collection(name, embedding_function=None, metadata={"hnsw:space": "cosine"})
    rng = random.Random(0)
    embedder = RandomEmbedder()
    started = time.perf_counter()
    for start in range(0, documents, 2000):
        ids = [f"d{i}" for i in range(start, min(documents, start + 2000))]
        texts = [text(rng) for _ in ids]
        collection.add(ids=ids, documents=texts, embeddings=embedder.embed_documents(texts))
    print(f"built {documents} documents in {time.perf_counter() - started:.0f} s", flush=True)
    return collection


def writer(host: str, port: int, name: str, seconds: float) -> None:
    import chromadb

    collection = chromadb.HttpClient(host=host, port=port).get_collection(name, embedding_function=None)
    rng = random.Random(1)
    embedder = RandomEmbedder()
    until = time.monotonic() + seconds
    written = 0
    while time.monotonic() < until:
        doc = text(rng)
        collection.add(ids=[f"w{time.time_ns()}"], documents=[doc], embeddings=embedder.embed_documents([doc]))
        written += 1
        time.sleep(0.05)
    print(f"writer: {written} documents", flush=True)


def latencies(collection, seconds: float, server, name: str, **options) -> list[float]:
    from rerank_ext_core.hybrid import ChromaHybridSearch

    search = ChromaHybridSearch(collection, embedder=RandomEmbedder(), **options)
    search.query("protein kinase", k=10)  # builds the BM25 side (not timed)
    process = subprocess.Popen([sys.executable, __file__, "--writer", name, "--port", str(server.port),
                                "--seconds", str(seconds)])
    rng = random.Random(2)
    times = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        query = " ".join(rng.choice(WORDS) for _ in range(3))
        start = time.perf_counter()
        search.query(query, k=10)
        times.append(time.perf_counter() - start)
    process.wait()
    search.close()
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))]


def page_times(collection, page_size: int) -> list[tuple[int, float]]:
    """(offset, seconds) for every page of one id scan, read back to back."""
    from rerank_ext_core import chroma

    times = []
    offset = 0
    pages = chroma.iter_pages(collection, page_size=page_size)
    while True:
        start = time.perf_counter()
        page = next(pages, None)
        if page is None:
            return times
        times.append((offset, time.perf_counter() - start))
        offset += len(page["ids"])


def scan_cost(times: list[tuple[int, float]], size: int, page_size: int) -> float:
    """Seconds of one id scan of ``size`` ids: each page's cost fitted as a + b * offset (Chroma's
    offset paging skips the rows before the offset) on the measured pages, summed over the pages."""
    import numpy as np

    offsets, seconds = (np.asarray(values, dtype=float) for values in zip(*times))
    slope, intercept = np.polyfit(offsets, seconds, 1) if len(times) > 1 else (0.0, seconds[0])
    pages = np.arange(0, size, page_size, dtype=float)
    return float(np.sum(intercept + slope * pages))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--writer", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        writer("127.0.0.1", args.port, args.writer, args.seconds)
        return 0
    import chromadb

    from rerank_ext_core.mirror import BM25Mirror
    from tests.hybrid_fixtures import ChromaServer

    with tempfile.TemporaryDirectory(prefix="rerank-ext-refresh-") as tmp:
        server = ChromaServer(Path(tmp) / "data")
        server.start()
        try:
            client = chromadb.HttpClient(host=server.host, port=server.port)
            name = "bench_refresh"
            collection = build(client, name, args.documents)
            modes = {
                "background refresher (default)": {},
                "checks on the query path (background_refresh=False)": {"background_refresh": False},
            }
            lines = ["## Query latency while another process writes", "",
                     f"Machine: {_common.machine()}. {args.documents} documents behind `chroma run`, another process "
                     f"adding one every 50 ms, {args.seconds:.0f} s of back-to-back hybrid queries (k=10) per mode; "
                     "default check_interval=1 s, id_check_interval=10 s.", "",
                     "| mode | queries | p50 ms | p95 ms | p99 ms | max ms | p99 / p50 |", "|---|---:|---:|---:|---:|---:|---:|"]
            for label, options in modes.items():
                times = latencies(collection, args.seconds, server, name, **options)
                p50, p95, p99 = (percentile(times, q) * 1000 for q in (0.5, 0.95, 0.99))
                lines.append(f"| {label} | {len(times)} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {max(times) * 1000:.0f} | {p99 / p50:.2f} |")
                print(lines[-1], flush=True)
            mirror = BM25Mirror(collection, index_dir=None)
            page_size, budget = mirror.scan_page_size, mirror.scan_budget
            pages = page_times(collection, page_size)
            count = collection.count()
            measured = sum(seconds for _, seconds in pages)
            lines += ["", f"One id scan (ids only, pages of {page_size:,}, read back to back; the refresher spaces "
                      f"its pages out and starts the next scan after max(id_check_interval, scan time / "
                      f"{budget}), so the scan takes at most {budget:.0%} of the time on average):", "",
                      "| ids in the collection | one id scan | periodic scan every | how |", "|---:|---:|---:|---|",
                      f"| {count:,} | {measured:.2f} s | {max(10.0, measured / budget):.0f} s | measured ({len(pages)} pages) |"]
            for size in (300_000, 1_000_000):
                cost = scan_cost(pages, size, page_size)
                lines.append(f"| {size:,} | {cost:.2f} s | {max(10.0, cost / budget):.0f} s | extrapolated: page cost "
                             "fitted as a + b * offset on the measured pages |")
        finally:
            server.stop()
    text_out = "\n".join(lines) + "\n"
    print(text_out)
    if args.markdown:
        args.markdown.write_text(text_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
