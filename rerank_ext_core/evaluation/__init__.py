"""``rerank-ext eval``: BM25, dense, hybrid and reranked retrieval scored on a BEIR folder."""

from rerank_ext_core.evaluation.dataset import BeirDataset, EvalInputError, load_beir
from rerank_ext_core.evaluation.metrics import METRIC_NAMES, evaluate_run, latency_summary
from rerank_ext_core.evaluation.runner import EvalConfig, EvalReport, run_evaluation
from rerank_ext_core.evaluation.stages import RerankerSpec, parse_reranker_spec

__all__ = [
    "METRIC_NAMES",
    "BeirDataset",
    "EvalConfig",
    "EvalInputError",
    "EvalReport",
    "RerankerSpec",
    "evaluate_run",
    "latency_summary",
    "load_beir",
    "parse_reranker_spec",
    "run_evaluation",
]
