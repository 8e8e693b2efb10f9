"""Hard negatives for reranker fine-tuning, mined with our own retrievers.

For each training query a retriever ranks the corpus; negatives are sampled from a rank window
(FlagEmbedding's ``range_for_sampling``), never a positive. With a teacher scorer each group also
carries the teacher's scores (``pos_scores``/``neg_scores``, for distillation with MarginMSE), and
with a ``margin`` the teacher drops likely false negatives: a negative it scores within ``margin``
of the query's weakest positive.
Sources: ``"hybrid"`` (our dense + BM25 fusion), ``"dense"``, ``"bm25"``, ``"random"``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rerank_ext_core._validation import check_choice, check_number, check_positive_int
from rerank_ext_core.finetune.data import Corpus, FinetuneInputError, TrainingGroup, TrainingQuery
from rerank_ext_core.rerank import Scorer

__all__ = ["NEGATIVE_SOURCES", "MiningSettings", "mine_negatives"]

logger = logging.getLogger(__name__)

NEGATIVE_SOURCES: tuple[str, ...] = ("hybrid", "dense", "bm25", "random")
Retrieve = Callable[[str, int], Sequence[tuple[str, float]]]
"""``retrieve(query, k)``: ``(id, score)`` of the ``k`` best documents, best first."""


@dataclass(frozen=True)
class MiningSettings:
    """``window``: 1-based ranks ``(first, last)`` to sample negatives from (FlagEmbedding's
    ``range_for_sampling``); ``negatives``: per query (``train_group_size - 1``)."""

    source: str = "hybrid"
    window: tuple[int, int] = (10, 100)
    negatives: int = 7
    seed: int = 42
    margin: float | None = None

    def __post_init__(self) -> None:
        check_choice("source", self.source, NEGATIVE_SOURCES, label="negative source")
        check_positive_int("negatives", self.negatives)
        first, last = self.window
        check_positive_int("window start", first)
        check_positive_int("window end", last)
        if last < first:
            msg = f"window=({first}, {last}) is empty: the end rank must be >= the start rank, e.g. (10, 100)."
            raise ValueError(msg)
        if self.margin is not None:
            check_number("margin", self.margin, low=0, example="margin=0.1")


def mine_negatives(
    queries: Sequence[TrainingQuery],
    corpus: Corpus,
    retrieve: Retrieve | None,
    settings: MiningSettings,
    *,
    teacher: Scorer | None = None,
) -> list[TrainingGroup]:
    """One :class:`TrainingGroup` per query with ``settings.negatives`` negatives from the rank
    window of ``retrieve`` (or uniformly from the corpus for ``source="random"``).

    Raises :class:`FinetuneInputError` naming the query when fewer negatives are found than asked.
    """
    rng = random.Random(settings.seed)
    first, last = settings.window
    groups: list[TrainingGroup] = []
    for query in _progress(queries, teacher):
        positives = set(query.positive_ids)
        if settings.source == "random":
            pool = [doc_id for doc_id in rng.sample(corpus.ids, min(len(corpus.ids), last)) if doc_id not in positives]
        else:
            if retrieve is None:
                msg = f"source={settings.source!r} needs a retriever; pass retrieve= or use source='random'."
                raise ValueError(msg)
            ranked = [doc_id for doc_id, _ in retrieve(query.text, last)]
            pool = [doc_id for doc_id in ranked[first - 1 : last] if doc_id not in positives]
        positive_scores: list[float] | None = None
        negative_scores: dict[str, float] = {}
        if teacher is not None:
            positive_scores = teacher.score(query.text, [corpus.text(doc_id) for doc_id in query.positive_ids])
            if settings.margin is not None and pool:
                negative_scores = dict(zip(pool, teacher.score(query.text, [corpus.text(d) for d in pool])))
                pool = _drop_false_negatives(query, pool, positive_scores, negative_scores, settings.margin)
        if len(pool) < settings.negatives:
            msg = (
                f"The query {query.query_id!r} has only {len(pool)} negative(s) in ranks {first}-{last} "
                f"of the {settings.source} retriever (positives excluded), fewer than the "
                f"{settings.negatives} asked for (train_group_size - 1). Widen the window "
                "(e.g. --negative-window 5 200), lower --train-group-size, or add documents."
            )
            raise FinetuneInputError(msg)
        chosen = rng.sample(pool, settings.negatives)
        if teacher is not None and not negative_scores:
            negative_scores = dict(zip(chosen, teacher.score(query.text, [corpus.text(d) for d in chosen])))
        groups.append(TrainingGroup(
            query=query.text,
            positives=tuple(corpus.text(doc_id) for doc_id in query.positive_ids),
            negatives=tuple(corpus.text(doc_id) for doc_id in chosen),
            pos_scores=None if positive_scores is None else tuple(float(s) for s in positive_scores),
            neg_scores=None if teacher is None else tuple(float(negative_scores[d]) for d in chosen),
            query_id=query.query_id,
            negative_ids=tuple(chosen),
        ))
    return groups


def _progress(queries: Sequence[TrainingQuery], teacher: Scorer | None) -> Sequence[TrainingQuery]:
    """A progress bar (on a terminal) when a teacher scores every group: that takes minutes."""
    import sys

    if teacher is None or not sys.stderr.isatty():
        return queries
    from tqdm.auto import tqdm

    return tqdm(queries, desc="teacher scores", unit="query")


def _drop_false_negatives(
    query: TrainingQuery, pool: list[str], positive_scores: Sequence[float],
    negative_scores: dict[str, float], margin: float,
) -> list[str]:
    ceiling = min(positive_scores) - margin
    kept = [doc_id for doc_id in pool if negative_scores[doc_id] < ceiling]
    if len(kept) < len(pool):
        logger.debug("query %s: %d likely false negatives dropped", query.query_id, len(pool) - len(kept))
    return kept
