"""ColBERT vectors stored at index time: kept in step with the collection, read by the reranker so
that only the query is encoded, saved beside the data and repaired when they disagree."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from rerank_ext_core.colbert import ColBERTScorer
from rerank_ext_core.colbert_store import ColBERTVectorStore, text_key
from rerank_ext_core.hybrid import ChromaHybridSearch
from tests.hybrid_fixtures import ANIMALS, fill, unique_name

chromadb = pytest.importorskip("chromadb")


@pytest.fixture(scope="module")
def encoder(colbert_path):
    return ColBERTScorer(colbert_path, cache_megabytes=0)


def test_the_store_follows_writes_deletes_and_other_writers(ephemeral_collection, embedder, encoder):
    fill(ephemeral_collection, embedder)
    store = ColBERTVectorStore(encoder)
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, colbert_vectors=store, check_interval=0, id_check_interval=0)
    assert len(store) == len(ANIMALS)
    search.add(ids=["n1"], documents=["Axolotls regrow their limbs."])
    assert "n1" in store  # encoded at write time
    search.delete(ids=["a1"])
    assert "a1" not in store
    ephemeral_collection.add(ids=["o1"], documents=["Okapis have long tongues."], embeddings=embedder.embed_documents(["o"]))
    search.query("okapis", k=3)  # the mirror notices the other writer's document
    assert "o1" in store
    ephemeral_collection.update(ids=["a2"], documents=["Dogs now sleep all day."])
    search.refresh()
    texts = [hit.document for hit in search.query("dogs sleep", k=3)]
    assert "Dogs now sleep all day." in texts
    assert store.vectors_for(text_key("Dogs now sleep all day.")) is not None  # re-encoded after the update


def test_a_reranker_with_the_store_encodes_only_the_query(ephemeral_collection, embedder, encoder, colbert_path):
    fill(ephemeral_collection, embedder)
    store = ColBERTVectorStore(encoder)
    search = ChromaHybridSearch(ephemeral_collection, embedder=embedder, colbert_vectors=store)
    texts = [hit.document for hit in search.query("which animals talk", k=5)]
    with_store = ColBERTScorer(colbert_path, vector_store=store, cache_megabytes=0)
    without = ColBERTScorer(colbert_path, cache_megabytes=0)
    scores = with_store.score("which animals talk", texts)
    assert with_store.documents_encoded == 0  # every document's vectors came from the store
    expected = without.score("which animals talk", texts)
    assert without.documents_encoded == len(texts)
    assert np.argsort(scores).tolist() == np.argsort(expected).tolist()
    assert np.allclose(scores, expected, atol=0.02)  # fp16 storage, fp32 MaxSim
    other = with_store.score("which animals talk", ["A text no store has seen."])
    assert with_store.documents_encoded == 1 and len(other) == 1  # any input still works


def test_fp16_storage_and_its_size(ephemeral_collection, embedder, encoder):
    fill(ephemeral_collection, embedder)
    store = ColBERTVectorStore(encoder)
    ChromaHybridSearch(ephemeral_collection, embedder=embedder, colbert_vectors=store)
    dim = encoder.encode_documents_uncached(["x"])[0].shape[1]
    assert store.nbytes == store.tokens * dim * 2  # 2 bytes per value


def test_saved_beside_the_data_reloaded_and_repaired(tmp_path, embedder, encoder, caplog):
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    collection = client.create_collection(unique_name(), embedding_function=embedder)
    fill(collection, embedder)
    store = ColBERTVectorStore(encoder)
    ChromaHybridSearch(collection, embedder=embedder, colbert_vectors=store)
    assert store.path is not None and store.path.exists() and str(tmp_path / "db") in str(store.path)

    again = ColBERTVectorStore(encoder)
    ChromaHybridSearch(collection, embedder=embedder, colbert_vectors=again)
    assert again.documents_encoded == 0 and len(again) == len(ANIMALS)  # loaded, not re-encoded

    collection.update(ids=["a3"], documents=["Parrots can whistle tunes."])  # changed behind the store's back
    collection.delete(ids=["a1"])
    third = ColBERTVectorStore(encoder)
    with caplog.at_level(logging.WARNING, logger="rerank_ext_core.colbert_store"):
        ChromaHybridSearch(collection, embedder=embedder, colbert_vectors=third)
    assert third.documents_encoded == 1  # only the changed document
    assert "a1" not in third and "no longer holds" in caplog.text

    store.path.write_bytes(b"not a zip at all")
    fourth = ColBERTVectorStore(encoder)
    with caplog.at_level(logging.WARNING, logger="rerank_ext_core.colbert_store"):
        ChromaHybridSearch(collection, embedder=embedder, colbert_vectors=fourth)
    assert "not usable" in caplog.text and len(fourth) == len(ANIMALS) - 1
    assert fourth.documents_encoded == len(fourth)  # rebuilt from the collection


def test_a_store_of_another_model_is_refused(ephemeral_collection, embedder, encoder, minilm_path, tmp_path):
    from tests.checkpoints import build_stanford_colbert

    other = build_stanford_colbert(minilm_path, tmp_path / "other", seed=5)
    fill(ephemeral_collection, embedder)
    store = ColBERTVectorStore(encoder)
    ChromaHybridSearch(ephemeral_collection, embedder=embedder, colbert_vectors=store)
    with pytest.raises(ValueError, match="vector_store holds vectors of another model"):
        ColBERTScorer(str(other), vector_store=store)
    with pytest.raises(TypeError, match="vector_store must be a ColBERTVectorStore"):
        ColBERTScorer(str(other), vector_store={"a": 1})


def test_both_adapters_read_the_store(ephemeral_collection, embedder, encoder, colbert_path):
    import langchain_rerank_ext as lc
    import llamaindex_rerank_ext as li
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    fill(ephemeral_collection, embedder)
    store = ColBERTVectorStore(encoder)
    ChromaHybridSearch(ephemeral_collection, embedder=embedder, colbert_vectors=store)
    texts = [record[0] for record in ANIMALS.values()]
    li_reranker = li.ColBERTReranker(model=colbert_path, vector_store=store, cache_megabytes=0)
    li_reranker.postprocess_nodes([NodeWithScore(node=TextNode(text=t)) for t in texts], query_str="animals")
    lc_reranker = lc.ColBERTReranker(model=colbert_path, vector_store=store, cache_megabytes=0)
    lc_reranker.compress_documents([Document(page_content=t) for t in texts], "animals")
    assert li_reranker.scorer.documents_encoded == 0 and lc_reranker.scorer.documents_encoded == 0


def test_writes_share_one_save_within_save_interval(tmp_path, embedder, encoder):
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    collection = client.create_collection(unique_name(), embedding_function=embedder)
    fill(collection, embedder)
    store = ColBERTVectorStore(encoder, save_interval=0.5)
    search = ChromaHybridSearch(collection, embedder=embedder, colbert_vectors=store, background_refresh=False)
    saves = store.saves
    for doc_id, text in (("s1", "Sloths move slowly."), ("s2", "Salmon swim upstream."), ("s3", "Seals bask on rocks.")):
        search.add(ids=[doc_id], documents=[text])
    search.delete(ids=["a1"])
    assert store.saves == saves  # not one save per write
    deadline = time.monotonic() + 10
    while store.saves == saves and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.saves == saves + 1
    reloaded = ColBERTVectorStore(encoder)
    ChromaHybridSearch(collection, embedder=embedder, colbert_vectors=reloaded, background_refresh=False)
    assert reloaded.documents_encoded == 0 and "s3" in reloaded and "a1" not in reloaded
    with pytest.raises(ValueError, match="save_interval"):
        ColBERTVectorStore(encoder, save_interval=-1)
