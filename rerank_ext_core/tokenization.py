"""Text to BM25 tokens: lowercase, punctuation, stopwords, optional stemming, CJK segmentation.

Whitespace splitting (LangChain's ``BM25Retriever``) keeps ``"pen."`` apart from ``"pen"`` and turns a
Chinese clause into one token. This tokenizer splits text into runs of word characters and runs of
CJK characters. Word runs are lowercased, filtered against a stopword list and optionally stemmed
with PyStemmer. CJK runs are segmented: Chinese (Han-only runs) into single characters plus overlapping character
bigrams by default (jieba's search-mode words on request), Japanese/Korean (runs holding kana or
hangul) into overlapping character bigrams. ``benchmarks/cjk_segmentation.py`` holds the
measurements behind that choice (a real Chinese QA set and a hand-made one, see docs/hybrid.md).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Literal

from rerank_ext_core._optional import require
from rerank_ext_core._validation import check_choice, check_positive_int

__all__ = ["CJK_SEGMENTATIONS", "Tokenizer"]

CJKSegmentation = Literal["jieba", "bigram", "unigram", "unigram+bigram", "none"]
CJK_SEGMENTATIONS: tuple[str, ...] = ("jieba", "bigram", "unigram", "unigram+bigram", "none")

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_KANA = r"\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_HANGUL = r"\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
_CJK_RUN = f"[{_HAN}{_KANA}{_HANGUL}\u30fc]+"
_WORD_RUN = rf"[^\W_{_HAN}{_KANA}{_HANGUL}\u30fc]+"
_RUN_PATTERN = re.compile(f"({_CJK_RUN})|({_WORD_RUN})")
_WORD_PATTERN = re.compile(_WORD_RUN)
_CJK_CHAR = re.compile(f"[{_HAN}{_KANA}{_HANGUL}\u30fc]")
_KANA_OR_HANGUL = re.compile(f"[{_KANA}{_HANGUL}]")

_jieba_lock = threading.Lock()
_jieba_ready = False


def _jieba():
    global _jieba_ready
    jieba = require("jieba", feature="Chinese word segmentation", extra="bm25")
    if not _jieba_ready:
        with _jieba_lock:
            if not _jieba_ready:
                jieba.setLogLevel(60)
                jieba.initialize()
                _jieba_ready = True
    return jieba


def _stopword_list(stopwords: str | Iterable[str] | None) -> frozenset[str]:
    if stopwords is None:
        return frozenset()
    if isinstance(stopwords, str):
        lists = require("bm25s.stopwords", feature="BM25 stopword lists", extra="bm25")
        names = {"en": "STOPWORDS_EN", "english": "STOPWORDS_EN", "zh": "STOPWORDS_CHINESE"}
        words: set[str] = set()
        for name in stopwords.lower().split("+"):
            if name not in names:
                msg = (
                    f"stopwords={stopwords!r} names the unknown stopword list {name!r}. Use "
                    f"{sorted(names)} joined with '+' (e.g. 'en+zh'), None for no stopwords, or "
                    "pass your own list of words."
                )
                raise ValueError(msg)
            words.update(getattr(lists, names[name]))
        return frozenset(words)
    return frozenset(word.lower() for word in stopwords)


class Tokenizer:
    """Split text into BM25 tokens.

    Args:
        stopwords: names of bm25s stopword lists joined with ``+`` (default ``"en+zh"``; ``"en"``,
            ``"zh"``), ``None`` or your own list of words; matched after lowercasing, before stemming.
        stemmer: a PyStemmer language (``"english"``, the default) or ``None``; stems word runs only.
        cjk: how Chinese runs are segmented: ``"unigram+bigram"`` (default: characters and
            overlapping character pairs, no dictionary), ``"jieba"`` (search-mode words),
            ``"bigram"``, ``"unigram"`` or ``"none"`` (whole run kept).
            Runs holding kana or hangul always use character bigrams (plus unigrams for one-char
            runs) unless ``cjk`` is ``"unigram"`` or ``"none"``.
        min_word_length: word runs shorter than this are dropped (default 2, as bm25s does); CJK
            tokens are kept at any length.

    Instances are thread-safe and picklable by configuration (see :attr:`signature`).
    """

    def __init__(
        self,
        *,
        stopwords: str | Iterable[str] | None = "en+zh",
        stemmer: str | None = "english",
        cjk: CJKSegmentation = "unigram+bigram",
        min_word_length: int = 2,
    ) -> None:
        check_choice("cjk", cjk, CJK_SEGMENTATIONS, label="CJK segmentation")
        check_positive_int("min_word_length", min_word_length)
        self._stopwords = _stopword_list(stopwords)
        self._stopwords_name = stopwords if isinstance(stopwords, str) or stopwords is None else None
        self._stemmer_language = stemmer
        self._cjk = cjk
        self._min_word_length = min_word_length
        self._local = threading.local()
        if stemmer is not None:
            self._new_stemmer()  # fail fast on an unknown language or a missing package

    @property
    def signature(self) -> str:
        """A stable digest of the configuration: tokens saved under one signature are reusable."""
        config = {
            "stopwords": sorted(self._stopwords),
            "stemmer": self._stemmer_language,
            "cjk": self._cjk,
            "min_word_length": self._min_word_length,
            "version": 1,
        }
        return hashlib.sha1(json.dumps(config, ensure_ascii=False).encode("utf-8")).hexdigest()

    def __repr__(self) -> str:
        stopwords = self._stopwords_name if self._stopwords_name is not None else "custom"
        return (
            f"Tokenizer(stopwords={stopwords!r}, stemmer={self._stemmer_language!r}, "
            f"cjk={self._cjk!r}, min_word_length={self._min_word_length})"
        )

    def _new_stemmer(self):
        stemmer_module = require("Stemmer", feature="BM25 stemming", extra="bm25")
        try:
            return stemmer_module.Stemmer(self._stemmer_language)
        except KeyError:
            msg = (
                f"stemmer={self._stemmer_language!r} is not a PyStemmer language. Use one of "
                f"{sorted(stemmer_module.algorithms())} or None to turn stemming off."
            )
            raise ValueError(msg) from None

    def _stem_words(self, words: list[str]) -> list[str]:
        # PyStemmer objects keep a cache and are not thread-safe: one per thread.
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None:
            stemmer = self._local.stemmer = self._new_stemmer()
        return stemmer.stemWords(words)

    def _segment_cjk(self, run: str) -> list[str]:
        if self._cjk == "none":
            return [run]
        if self._cjk == "unigram":
            return list(run)
        if self._cjk == "jieba" and not _KANA_OR_HANGUL.search(run):
            return [token for token in _jieba().lcut_for_search(run) if token.strip()]
        if len(run) == 1:
            return [run]
        bigrams = [run[i : i + 2] for i in range(len(run) - 1)]
        if self._cjk == "unigram+bigram":
            return list(run) + bigrams
        return bigrams

    def tokenize(self, text: str) -> list[str]:
        """Return the tokens of one text, in order (repeats kept: BM25 counts them)."""
        text = unicodedata.normalize("NFKC", text).lower()
        if not _CJK_CHAR.search(text):
            minimum, stopwords = self._min_word_length, self._stopwords
            words = [w for w in _WORD_PATTERN.findall(text) if len(w) >= minimum and w not in stopwords]
            return self._stem_words(words) if self._stemmer_language is not None and words else words
        tokens: list[str] = []
        word_positions: list[int] = []
        for match in _RUN_PATTERN.finditer(text):
            cjk_run, word = match.group(1), match.group(2)
            if word is not None:
                if len(word) >= self._min_word_length and word not in self._stopwords:
                    word_positions.append(len(tokens))
                    tokens.append(word)
                continue
            tokens.extend(t for t in self._segment_cjk(cjk_run) if t not in self._stopwords)
        if self._stemmer_language is not None and word_positions:
            stems = self._stem_words([tokens[i] for i in word_positions])
            for position, stem in zip(word_positions, stems):
                tokens[position] = stem
        return tokens

    def tokenize_many(self, texts: Sequence[str]) -> list[list[str]]:
        return [self.tokenize(text) for text in texts]
