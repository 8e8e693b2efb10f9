"""LlamaIndex node postprocessors: ``CrossEncoderReranker`` and ``ColBERTReranker``."""

from __future__ import annotations

from typing import Any, List, Optional

from llama_index.core.bridge.pydantic import ConfigDict
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from rerank_ext_core.rerank import RankedText
from rerank_ext_core.reranker_fields import ColBERTFields, CrossEncoderFields, RerankerFields

__all__ = ["ColBERTReranker", "CrossEncoderReranker"]

dispatcher = get_dispatcher(__name__)

RETRIEVAL_SCORE_KEY = "retrieval_score"


def _reranked_node(original: NodeWithScore, score: float, keep_retrieval_score: bool) -> NodeWithScore:
    """A new NodeWithScore; the caller's node and its metadata are left untouched."""
    node = original.node
    if keep_retrieval_score and original.score is not None:
        node = node.model_copy(
            update={
                "metadata": {**node.metadata, RETRIEVAL_SCORE_KEY: original.score},
                "excluded_llm_metadata_keys": [*node.excluded_llm_metadata_keys, RETRIEVAL_SCORE_KEY],
                "excluded_embed_metadata_keys": [*node.excluded_embed_metadata_keys, RETRIEVAL_SCORE_KEY],
            }
        )
    return NodeWithScore(node=node, score=score)


class _RerankPostprocessor(RerankerFields, BaseNodePostprocessor):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    def _postprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        if query_bundle is None:
            msg = f"{type(self).__name__} needs the query: pass query_bundle= or query_str=."
            raise ValueError(msg)
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
                texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
                ranked: list[RankedText] = self._rank(query_bundle.query_str, texts)
                reranked = [_reranked_node(nodes[r.index], r.score, self.keep_retrieval_score) for r in ranked]
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
