import string

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rerank_ext_core.colbert import ColBERTScorer, detect_colbert_layout, maxsim_scores

QUERY = "what do cats eat?"
DOCS = [
    "Cats are obligate carnivores, and they eat meat.",
    "The stock market fell sharply on Monday!",
    "",
    "猫是食肉动物，主要吃肉。",
]


def stanford_colbert_scores(model_dir, query, docs, query_maxlen=32, doc_maxlen=180):
    """ColBERT scoring written out as the Stanford-NLP implementation does it, without our code."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertModel

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    bert = BertModel.from_pretrained(model_dir, add_pooling_layer=False).eval()
    linear = load_file(f"{model_dir}/model.safetensors")["linear.weight"]
    q_marker, d_marker = tokenizer.convert_tokens_to_ids(["[unused0]", "[unused1]"])

    q = tokenizer([". " + query], padding="max_length", truncation=True, max_length=query_maxlen, return_tensors="pt")
    ids, mask = q["input_ids"].clone(), q["attention_mask"]
    ids[:, 1] = q_marker
    ids[ids == tokenizer.pad_token_id] = tokenizer.mask_token_id  # query augmentation
    with torch.no_grad():
        q_vecs = torch.nn.functional.normalize(bert(ids, attention_mask=mask)[0] @ linear.T, dim=-1)[0]

    skiplist = {tokenizer.convert_tokens_to_ids(p) for p in string.punctuation}
    scores = []
    for doc in docs:
        d = tokenizer([". " + doc], truncation=True, max_length=doc_maxlen, return_tensors="pt")
        d_ids = d["input_ids"].clone()
        d_ids[:, 1] = d_marker
        with torch.no_grad():
            d_vecs = torch.nn.functional.normalize(bert(d_ids, attention_mask=d["attention_mask"])[0] @ linear.T, dim=-1)[0]
        keep = torch.tensor([t not in skiplist for t in d_ids[0].tolist()])
        scores.append(float((q_vecs @ d_vecs[keep].T).max(dim=1).values.sum()))
    return scores


def test_stanford_checkpoint_is_scored_as_colbert_defines_it(colbert_path):
    scorer = ColBERTScorer(colbert_path, device="cpu")
    assert detect_colbert_layout(colbert_path) == "colbert" and scorer.backend == "sentence-transformers"
    np.testing.assert_allclose(scorer.score(QUERY, DOCS), stanford_colbert_scores(colbert_path, QUERY, DOCS), atol=1e-4)


def test_scores_equal_sentence_transformers_maxsim(colbert_path):
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.util import maxsim

    model = MultiVectorEncoder(colbert_path, device="cpu", local_files_only=True)
    reference = maxsim(model.encode_query([QUERY]), model.encode_document(DOCS))[0]
    np.testing.assert_allclose(ColBERTScorer(colbert_path).score(QUERY, DOCS), reference.numpy(), atol=1e-5)


def test_plain_encoder_uses_its_own_normalised_token_vectors(minilm_path):
    from transformers import AutoModel, AutoTokenizer

    scorer = ColBERTScorer(minilm_path)
    assert detect_colbert_layout(minilm_path) == "encoder"
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    model = AutoModel.from_pretrained(minilm_path).eval()
    skiplist = {tokenizer.convert_tokens_to_ids(p) for p in string.punctuation}

    def vectors(text, drop_punctuation):
        encoded = tokenizer(text, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            out = torch.nn.functional.normalize(model(**encoded)[0][0], dim=-1)
        if drop_punctuation:
            keep = torch.tensor([t not in skiplist for t in encoded["input_ids"][0].tolist()])
            out = out[keep]
        return out

    q = vectors(QUERY, drop_punctuation=False)
    expected = [float((q @ vectors(d, True).T).max(dim=1).values.sum()) for d in DOCS]
    np.testing.assert_allclose(scorer.score(QUERY, DOCS), expected, atol=1e-4)


def test_bge_m3_colbert_vectors_equal_flag_embedding(bge_m3_path):
    from FlagEmbedding import BGEM3FlagModel

    scorer = ColBERTScorer(bge_m3_path, device="cpu")
    assert scorer.backend == "bge-m3"
    model = BGEM3FlagModel(bge_m3_path, use_fp16=False, devices="cpu")
    q = model.encode([QUERY], return_dense=False, return_colbert_vecs=True, max_length=512)["colbert_vecs"][0]
    docs = model.encode(DOCS, return_dense=False, return_colbert_vecs=True, max_length=512)["colbert_vecs"]
    expected = [float(model.colbert_score(q, d)) for d in docs]
    np.testing.assert_allclose(scorer.score(QUERY, DOCS), expected, atol=1e-5)


def test_bge_m3_backend_on_a_colbert_checkpoint_is_refused(colbert_path):
    with pytest.raises(ValueError, match="colbert_linear.pt"):
        ColBERTScorer(colbert_path, backend="bge-m3")


def test_a_document_seen_again_is_not_encoded_again(colbert_path):
    scorer = ColBERTScorer(colbert_path)
    first = scorer.score(QUERY, DOCS)
    assert scorer.documents_encoded == len(DOCS)
    second = scorer.score("another query", DOCS + [DOCS[0], "new text"])
    assert scorer.documents_encoded == len(DOCS) + 1
    assert scorer.score(QUERY, DOCS) == first and len(second) == len(DOCS) + 2


def test_cache_is_bounded(colbert_path):
    scorer = ColBERTScorer(colbert_path, cache_megabytes=0)
    scorer.score(QUERY, DOCS)
    scorer.score(QUERY, DOCS)
    assert scorer.documents_encoded == 2 * len(DOCS)


def test_split_keeps_the_best_passage(colbert_path):
    scorer = ColBERTScorer(colbert_path, document_length=24, long_documents="split", passage_overlap=4)
    long_text = "The stock market fell. " * 20 + "Cats are carnivores and eat meat."
    passages = scorer._splitter.split(long_text, 21)
    assert len(passages) > 2 and all(p in long_text for p in passages)
    assert scorer.score(QUERY, [long_text])[0] == pytest.approx(max(scorer.score(QUERY, passages)), abs=1e-5)


def test_maxsim_hand_computed():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    d1 = np.array([[0.6, 0.8], [1.0, 0.0]])  # q0 best 1.0, q1 best 0.8
    d2 = np.array([[0.0, -1.0]])  # q0 0.0, q1 -1.0
    assert maxsim_scores(q, [d1, d2], length_normalize=False) == pytest.approx([1.8, -1.0])
    assert maxsim_scores(q, [d1, d2], length_normalize=True) == pytest.approx([0.9, -0.5])


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float32, st.tuples(st.integers(1, 6), st.just(4)), elements=st.floats(-1, 1, width=32)),
    st.lists(arrays(np.float32, st.tuples(st.integers(1, 7), st.just(4)), elements=st.floats(-1, 1, width=32)), min_size=1, max_size=5),
)
def test_maxsim_matches_brute_force(query, docs):
    expected = [sum(max(float(np.dot(qt, dt)) for dt in d) for qt in query) for d in docs]
    np.testing.assert_allclose(maxsim_scores(query, docs, length_normalize=False), expected, atol=1e-4)
