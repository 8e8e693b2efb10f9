"""Fixtures for the hybrid-retrieval tests: a torch-free embedder, Chroma clients of every kind,
and a real Chroma server on 127.0.0.1 (started and stopped here)."""

from __future__ import annotations

import hashlib
import math
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

CHROMA_BIN = Path(sys.executable).with_name("chroma")

ANIMALS = {
    "a1": ("Cats are small domesticated felines that purr and hunt mice.", {"topic": "animals", "year": 2020}),
    "a2": ("Dogs are loyal companions; many dogs enjoy long walks.", {"topic": "animals", "year": 2021}),
    "a3": ("Parrots can imitate human speech and live for decades.", {"topic": "animals", "year": 2022}),
    "s1": ("The Python programming language favours readable code.", {"topic": "software", "year": 2020}),
    "s2": ("Rust guarantees memory safety without a garbage collector.", {"topic": "software", "year": 2021}),
    "s3": ("Chroma is a vector database for embeddings and metadata filters.", {"topic": "software", "year": 2022}),
    "f1": ("Sourdough bread needs a starter, flour, water and patience.", {"topic": "food", "year": 2020}),
    "f2": ("Espresso is coffee brewed by forcing hot water through ground beans.", {"topic": "food", "year": 2023}),
}


class HashEmbedder:
    """Deterministic bag-of-words embedding (hashed words, L2-normalised): texts sharing words
    are close. Implements the core embedder protocol and Chroma's embedding-function protocol."""

    dimension = 64

    def __init__(self) -> None:
        self.query_calls = 0

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self.dimension
        for word in re.findall(r"\w+", text.lower()):
            digest = hashlib.md5(word.encode()).digest()
            vector[digest[0] % self.dimension] += 1.0
        vector[-1] += 0.01  # never the zero vector
        norm = math.sqrt(sum(v * v for v in vector))
        return [v / norm for v in vector]

    def embed_query(self, text: str | None = None, *, input=None):  # noqa: A002
        if input is not None:
            return [self._vector(t) for t in input]
        self.query_calls += 1
        return self._vector(text)

    def embed_documents(self, texts):
        return [self._vector(t) for t in texts]

    def __call__(self, input):  # noqa: A002
        return self.embed_documents(input)

    def is_legacy(self) -> bool:
        return True

    @staticmethod
    def name() -> str:
        return "hash_embedder_for_tests"


def unique_name(prefix: str = "col") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def fill(collection, embedder, records=ANIMALS) -> None:
    ids = list(records)
    collection.add(
        ids=ids,
        documents=[records[i][0] for i in ids],
        metadatas=[records[i][1] for i in ids],
        embeddings=embedder.embed_documents([records[i][0] for i in ids]),
    )


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def ephemeral_collection(embedder):
    chromadb = pytest.importorskip("chromadb")
    client = chromadb.EphemeralClient()
    name = unique_name()
    collection = client.create_collection(name, embedding_function=embedder)
    yield collection
    client.delete_collection(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChromaServer:
    """A `chroma run` process on 127.0.0.1 that tests can stop and start again (same port and
    data folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = _free_port()
        self.host = "127.0.0.1"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.path.parent / "chroma.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(CHROMA_BIN), "run", "--host", self.host, "--port", str(self.port), "--path", str(self.path)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chroma run exited with {self.process.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"chroma run did not answer on {self.url} within {timeout}s")

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown, no flush."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    if not CHROMA_BIN.exists() and shutil.which("chroma") is None:
        pytest.skip("the chroma CLI is not installed")
    server = ChromaServer(tmp_path_factory.mktemp("chroma_server") / "data")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def http_client(chroma_server):
    chromadb = pytest.importorskip("chromadb")
    if chroma_server.process is None:
        chroma_server.start()
    return chromadb.HttpClient(host=chroma_server.host, port=chroma_server.port)


@pytest.fixture(params=["ephemeral", "persistent", "http"])
def any_client(request, tmp_path):
    """Each kind of Chroma client the retrievers must work with."""
    chromadb = pytest.importorskip("chromadb")
    if request.param == "ephemeral":
        return chromadb.EphemeralClient()
    if request.param == "persistent":
        return chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    return request.getfixturevalue("http_client")
