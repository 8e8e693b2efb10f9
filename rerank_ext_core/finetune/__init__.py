"""Fine-tune a reranker on your own corpus: ``rerank-ext finetune`` and its Python API.

Layout: :mod:`.data` (what is read), :mod:`.mining` (hard negatives from a rank window),
:mod:`.retrievers` (the retrievers mined with), :mod:`.training` (the sentence-transformers
trainers), :mod:`.runner` (the whole run, model card, before/after), :mod:`.command` (the CLI).
"""

from rerank_ext_core.finetune.data import (
    Corpus,
    FinetuneInputError,
    TrainingGroup,
    TrainingQuery,
    load_beir_training,
    load_chroma_training,
    load_flag_jsonl,
    write_flag_jsonl,
)
from rerank_ext_core.finetune.mining import NEGATIVE_SOURCES, MiningSettings, mine_negatives
from rerank_ext_core.finetune.runner import FinetuneConfig, FinetuneReport, run_finetune
from rerank_ext_core.finetune.training import TrainingSettings

__all__ = [
    "NEGATIVE_SOURCES",
    "Corpus",
    "FinetuneConfig",
    "FinetuneInputError",
    "FinetuneReport",
    "MiningSettings",
    "TrainingGroup",
    "TrainingQuery",
    "TrainingSettings",
    "load_beir_training",
    "load_chroma_training",
    "load_flag_jsonl",
    "mine_negatives",
    "run_finetune",
    "write_flag_jsonl",
]
