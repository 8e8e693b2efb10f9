"""Split long documents into overlapping passages that fit the model, and keep each one's best score."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from rerank_ext_core._validation import check_choice, check_non_negative_int

__all__ = [
    "LONG_DOCUMENT_MODES",
    "LongDocuments",
    "PassageSplitter",
    "check_long_documents",
    "score_documents",
    "score_max_over_passages",
]

LongDocuments = Literal["truncate", "split"]
LONG_DOCUMENT_MODES: tuple[str, ...] = ("truncate", "split")


class PassageSplitter:
    """Cuts a text into windows of at most ``max_tokens`` tokens that overlap by ``overlap`` tokens.

    Windows are sliced from the original text by character offsets, so passages are exact substrings.
    """

    def __init__(self, tokenizer: Any, *, overlap: int) -> None:
        self._tokenizer = tokenizer
        self.overlap = check_non_negative_int("passage_overlap", overlap)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def split(self, text: str, max_tokens: int) -> list[str]:
        if max_tokens < 1:
            msg = (
                f"No room is left for document tokens (budget {max_tokens}): the query is as long as "
                "max_length. Shorten the query or raise max_length."
            )
            raise ValueError(msg)
        encoding = self._tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoding["offset_mapping"]
        if len(offsets) <= max_tokens:
            return [text]
        stride = max(1, max_tokens - min(self.overlap, max_tokens - 1))
        passages = []
        for start in range(0, len(offsets), stride):
            window = offsets[start : start + max_tokens]
            passages.append(text[window[0][0] : window[-1][1]])
            if start + max_tokens >= len(offsets):
                break
        return passages


def score_max_over_passages(
    texts: Sequence[str],
    split: Callable[[str], list[str]],
    score_passages: Callable[[list[str]], list[float]],
) -> list[float]:
    """Score every passage of every text in one call and keep each text's maximum (max-P)."""
    passages: list[str] = []
    owners: list[int] = []
    for index, text in enumerate(texts):
        for passage in split(text):
            passages.append(passage)
            owners.append(index)
    passage_scores = score_passages(passages)
    best = [float("-inf")] * len(texts)
    for owner, score in zip(owners, passage_scores):
        best[owner] = max(best[owner], float(score))
    return best


def score_documents(
    texts: list[str],
    long_documents: str,
    splitter: PassageSplitter,
    budget: Callable[[], int],
    score: Callable[[list[str]], Sequence[float]],
) -> list[float]:
    """``score(texts)`` as they are (``"truncate"``: the model cuts them), or max-P over passages
    of at most ``budget()`` tokens (``"split"``)."""
    if long_documents != "split":
        return list(score(texts))
    tokens = budget()
    return score_max_over_passages(texts, lambda text: splitter.split(text, tokens), score)


def check_long_documents(value: str) -> str:
    return check_choice("long_documents", value, LONG_DOCUMENT_MODES)
