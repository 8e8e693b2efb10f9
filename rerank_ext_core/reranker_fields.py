"""Pydantic field groups shared by the LlamaIndex and LangChain reranker classes.

Both frameworks build their components on pydantic v2, so each adapter class inherits one of these
groups beside its framework base class. A scorer's options are declared once, in the scorer's own
``__init__`` (type, default) and docstring (description); the field groups are built from it, so
a default can't differ between the core and an adapter, and a new option is one edit. Nothing in
this module imports a framework (pydantic comes with the ``llamaindex`` and ``langchain`` extras).
"""

from __future__ import annotations

import inspect
import logging
import re
import typing
from collections.abc import Sequence
from typing import Any, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, create_model, field_validator

from rerank_ext_core.colbert import ColBERTScorer
from rerank_ext_core.cross_encoder import CrossEncoderScorer
from rerank_ext_core.rerank import (
    RankedText,
    Scorer,
    check_threshold_in_bounds,
    rerank,
    validate_first_stage_weight,
    validate_score_threshold,
    validate_top_n,
)

__all__ = ["ColBERTFields", "CrossEncoderFields", "RerankerFields"]

logger = logging.getLogger(__name__)


class RerankerFields(BaseModel):
    """What every reranker adapter has: how many to keep, a threshold, and its loaded scorer."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    top_n: Optional[int] = Field(
        default=None, description="How many candidates to return, best first; None keeps them all."
    )
    score_threshold: Optional[float] = Field(
        default=None, description="Drop candidates scoring below this (on the scorer's documented scale)."
    )
    first_stage_weight: float = Field(
        default=0.0,
        description=(
            "Blend the first-stage (retriever) score into the returned score: (1 - w) * reranker + w * first "
            "stage, each min-max normalised per query; 0 ranks by the reranker alone. `rerank-ext finetune` "
            "picks w on its dev split and prints it."
        ),
    )
    keep_retrieval_score: bool = Field(
        default=True,
        description="Keep the first-stage score in metadata['retrieval_score'] beside the new score.",
    )
    scorer_class: ClassVar[type[Scorer] | None] = None
    """The core scorer whose ``__init__`` arguments are this group's fields."""
    scorer_option_names: ClassVar[tuple[str, ...]] = ()
    _scorer: Any = PrivateAttr(default=None)

    @field_validator("top_n")
    @classmethod
    def _check_top_n(cls, value: Optional[int]) -> Optional[int]:
        return validate_top_n(value)

    @field_validator("first_stage_weight")
    @classmethod
    def _check_first_stage_weight(cls, value: float) -> float:
        return validate_first_stage_weight(value)

    @field_validator("score_threshold")
    @classmethod
    def _check_score_threshold(cls, value: Optional[float]) -> Optional[float]:
        return validate_score_threshold(value)

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self._scorer = self._build_scorer()
        check_threshold_in_bounds(self.score_threshold, self._scorer)

    def _build_scorer(self) -> Scorer:
        if self.scorer_class is None:
            msg = f"{type(self).__name__} names no scorer_class."
            raise TypeError(msg)
        return self.scorer_class(**{name: getattr(self, name) for name in self.scorer_option_names})

    @property
    def scorer(self) -> Scorer:
        return self._scorer

    def _rank(
        self, query: str, texts: Sequence[str], first_stage_scores: Sequence[float | None] | None = None
    ) -> list[RankedText]:
        return rerank(
            self._scorer, query, texts, top_n=self.top_n, score_threshold=self.score_threshold,
            first_stage_scores=first_stage_scores, first_stage_weight=self.first_stage_weight,
        )


def _argument_docs(docstring: str) -> dict[str, str]:
    """``{name: description}`` from the ``Args:`` section of a Google-style docstring."""
    docs: dict[str, str] = {}
    lines = inspect.cleandoc(docstring).splitlines()
    try:
        start = lines.index("Args:") + 1
    except ValueError:
        return docs
    current = None
    for line in lines[start:]:
        if not line.strip():
            break
        match = re.match(r"^    (\w+): (.*)$", line)
        if match:
            current = match.group(1)
            docs[current] = match.group(2).strip()
        elif current is not None and line.startswith("      "):
            docs[current] += " " + line.strip()
    return docs


def scorer_options(scorer_class: type) -> dict[str, tuple[Any, Any]]:
    """Pydantic field definitions for every argument of ``scorer_class.__init__``: the type and
    default from its signature, the description from its docstring. The scorer's signature is the
    one place an option is declared; both adapters' fields are built from it."""
    hints = typing.get_type_hints(scorer_class.__init__)
    docs = _argument_docs(scorer_class.__doc__ or "")
    fields: dict[str, tuple[Any, Any]] = {}
    for name, parameter in inspect.signature(scorer_class.__init__).parameters.items():
        if name == "self":
            continue
        fields[name] = (hints[name], Field(default=parameter.default, description=docs.get(name)))
    return fields


def _field_group(name: str, scorer_class: type) -> type[RerankerFields]:
    options = scorer_options(scorer_class)
    group = create_model(name, __base__=RerankerFields, __module__=__name__, **options)
    group.scorer_class = scorer_class
    group.scorer_option_names = tuple(options)
    return group


CrossEncoderFields = _field_group("CrossEncoderFields", CrossEncoderScorer)
ColBERTFields = _field_group("ColBERTFields", ColBERTScorer)
