from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from rerank_ext_core.bm25 import BM25Index
from rerank_ext_core.tokenization import Tokenizer


def test_lowercase_punctuation_stopwords_and_stemming():
    tokens = Tokenizer().tokenize("The PEN. Running runners, and the pens!")
    assert tokens == ["pen", "run", "runner", "pen"]
    assert Tokenizer(stemmer=None).tokenize("The PEN. Running") == ["pen", "running"]
    assert Tokenizer(stopwords=None, stemmer=None).tokenize("The pen") == ["the", "pen"]
    assert Tokenizer(stopwords=["pen"], stemmer=None).tokenize("The pen") == ["the"]


def test_chinese_is_segmented_into_words_not_clauses():
    tokens = Tokenizer().tokenize("北京大学的机器学习课程很受欢迎。")
    assert "北京" in tokens and "机器" in tokens and "学习" in tokens
    assert "的" not in tokens  # Chinese stopword
    assert all(len(t) <= 4 for t in tokens)


def test_japanese_uses_character_bigrams_and_mixed_text_keeps_both():
    tokens = Tokenizer().tokenize("東京タワーはGPU computing")
    assert "東京" in tokens and "タワ" in tokens
    assert "gpu" in tokens and "comput" in tokens


@pytest.mark.parametrize("mode", ["bigram", "unigram", "unigram+bigram", "none"])
def test_other_cjk_modes(mode):
    tokens = Tokenizer(cjk=mode).tokenize("机器学习")
    expected = {
        "bigram": ["机器", "器学", "学习"],
        "unigram": ["机", "器", "学", "习"],
        "unigram+bigram": ["机", "器", "学", "习", "机器", "器学", "学习"],
        "none": ["机器学习"],
    }[mode]
    assert tokens == expected


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"cjk": "mecab"}, "cjk='mecab'"),
        ({"stopwords": "klingon"}, "'klingon'"),
        ({"stemmer": "klingon"}, "stemmer='klingon'"),
        ({"min_word_length": 0}, "min_word_length=0"),
    ],
)
def test_bad_options(kwargs, fragment):
    with pytest.raises(ValueError) as error:
        Tokenizer(**kwargs)
    assert fragment in str(error.value)


def test_signature_changes_with_configuration():
    assert Tokenizer().signature == Tokenizer().signature
    assert Tokenizer().signature != Tokenizer(stemmer=None).signature
    assert Tokenizer().signature != Tokenizer(cjk="bigram").signature


def test_thread_safe():
    tokenizer = Tokenizer()
    texts = [f"Running cats number {i} 北京大学的学生 東京タワー" for i in range(200)]
    expected = [tokenizer.tokenize(t) for t in texts]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(tokenizer.tokenize, texts)) == expected


CHINESE_DOCS = {
    "c1": "长城是中国古代的军事防御工程，东起山海关，西至嘉峪关。",
    "c2": "熊猫主要生活在四川的竹林里，以竹子为食。",
    "c3": "上海是中国最大的经济中心城市，有很多摩天大楼。",
    "c4": "茶叶起源于中国，绿茶和红茶的制作工艺不同。",
    "c5": "故宫位于北京中心，是明清两代的皇家宫殿。",
}
CHINESE_QUERIES = {"熊猫吃什么": "c2", "长城在哪里": "c1", "北京的皇家宫殿": "c5", "绿茶怎么制作": "c4"}


def test_chinese_retrieval_needs_segmentation():
    segmented = BM25Index(Tokenizer())
    segmented.upsert(list(CHINESE_DOCS), list(CHINESE_DOCS.values()))
    whole_clauses = BM25Index(Tokenizer(cjk="none"))
    whole_clauses.upsert(list(CHINESE_DOCS), list(CHINESE_DOCS.values()))
    for query, expected in CHINESE_QUERIES.items():
        assert segmented.search(query, 1)[0][0] == expected, query
        assert whole_clauses.search(query, 1) == []  # a clause as one token matches nothing
