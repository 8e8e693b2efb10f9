"""``rerank-ext eval``: BM25, dense, hybrid and reranked retrieval scored on a BEIR folder.

The data's path is the layout: ``dataset`` reads the BEIR folder; ``first_stage`` runs BM25, dense
and their fusion; ``rerank_stage`` reorders the hybrid top-N; ``metrics`` scores each stage;
``report`` writes the outputs; ``runner`` runs them in order (``corpus_cache`` keeps the encoded
corpus between runs).
"""

from rerank_ext_core.evaluation.dataset import BeirDataset, EvalInputError, load_beir
from rerank_ext_core.evaluation.metrics import METRIC_NAMES, evaluate_run, latency_summary
from rerank_ext_core.evaluation.rerank_stage import RerankerSpec, parse_reranker_spec
from rerank_ext_core.evaluation.runner import EvalConfig, EvalReport, run_evaluation

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
