"""LlamaIndex node postprocessors: ``CrossEncoderReranker`` and ``ColBERTReranker``."""

from __future__ import annotations

from typing import Any, List, Optional

from llama_index.core.bridge.pydantic import ConfigDict, Field
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from rerank_ext_core._validation import check_items
from rerank_ext_core.rerank import RankedText
from rerank_ext_core.reranker_fields import ColBERTFields, CrossEncoderFields, RerankerFields

__all__ = ["ColBERTReranker", "CrossEncoderReranker"]

dispatcher = get_dispatcher(__name__)

RETRIEVAL_SCORE_KEY = "retrieval_score"
RERANKER_SCORE_KEY = "reranker_score"


def _with_extra(keys: List[str], key: str) -> List[str]:
    return keys if key in keys else [*keys, key]


def _reranked_node(original: NodeWithScore, ranked: RankedText, keep_retrieval_score: bool) -> NodeWithScore:
    """A new NodeWithScore over a copy of the node: the caller's node and metadata stay untouched."""
    node = original.node
    update: dict[str, Any] = {"metadata": dict(node.metadata)}
    hidden = []
    if ranked.reranker_score is not None:  # the score is a blend: keep the reranker's own beside it
        update["metadata"][RERANKER_SCORE_KEY] = ranked.reranker_score
        hidden.append(RERANKER_SCORE_KEY)
    if keep_retrieval_score and original.score is not None:
        update["metadata"][RETRIEVAL_SCORE_KEY] = original.score
        hidden.append(RETRIEVAL_SCORE_KEY)
    if hidden:
        llm_keys, embed_keys = node.excluded_llm_metadata_keys, node.excluded_embed_metadata_keys
        for key in hidden:
            llm_keys, embed_keys = _with_extra(llm_keys, key), _with_extra(embed_keys, key)
        update["excluded_llm_metadata_keys"] = llm_keys
        update["excluded_embed_metadata_keys"] = embed_keys
    return NodeWithScore(node=node.model_copy(update=update), score=ranked.score)


class _RerankPostprocessor(RerankerFields, BaseNodePostprocessor):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    metadata_mode: MetadataMode = Field(
        default=MetadataMode.NONE,
        description=(
            "What of the node the model reads: NONE (the text alone, as LangChain's page_content, so "
            "both adapters score alike), or EMBED / LLM / ALL to include metadata."
        ),
    )

    def _postprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        if query_bundle is None:
            msg = f"{type(self).__name__} needs the query: pass query_bundle= or query_str=."
            raise ValueError(msg)
        nodes = check_items("nodes", nodes, NodeWithScore, "NodeWithScore")
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle, nodes=nodes, top_n=self.top_n or len(nodes), model_name=self.model
            )
        )
        reranked: List[NodeWithScore] = []
        try:
            with self.callback_manager.event(
                CBEventType.RERANKING,
                payload={
                    EventPayload.NODES: nodes,
                    EventPayload.MODEL_NAME: self.model,
                    EventPayload.QUERY_STR: query_bundle.query_str,
                    EventPayload.TOP_K: self.top_n,
                },
            ) as event:
                texts = [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes]
                ranked: list[RankedText] = self._rank(query_bundle.query_str, texts, [n.score for n in nodes])
                reranked = [_reranked_node(nodes[r.index], r, self.keep_retrieval_score) for r in ranked]
                event.on_end(payload={EventPayload.NODES: reranked})
        finally:
            dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked


class CrossEncoderReranker(CrossEncoderFields, _RerankPostprocessor):
    """Rerank nodes with a cross-encoder (BGE rerankers and other sentence-transformers/FlagEmbedding models).

    ``index.as_query_engine(node_postprocessors=[CrossEncoderReranker(model=..., top_n=5)])``.
    Returns new ``NodeWithScore`` objects; scores are sigmoid probabilities unless ``normalize=False``.
    """

    @classmethod
    def class_name(cls) -> str:
        return "CrossEncoderReranker"


class ColBERTReranker(ColBERTFields, _RerankPostprocessor):
    """Rerank nodes with ColBERT late interaction (MaxSim): colbertv2.0, PyLate, BGE-M3, or a plain encoder."""

    @classmethod
    def class_name(cls) -> str:
        return "ColBERTReranker"
