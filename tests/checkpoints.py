"""Tiny random checkpoints for plumbing tests, built in seconds from the MiniLM tokenizer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

HIDDEN = 32


def _tiny_bert_config(**overrides):
    from transformers import BertConfig

    settings = dict(
        vocab_size=30522,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        initializer_range=0.2,
    )
    settings.update(overrides)
    return BertConfig(**settings)


def _copy_tokenizer(minilm_path: str, target: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        source = Path(minilm_path) / name
        if source.exists():
            shutil.copy(source, target / name)


def build_cross_encoder(minilm_path: str, target: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    target.mkdir(parents=True, exist_ok=True)
    model = BertForSequenceClassification(_tiny_bert_config(num_labels=1))
    model.save_pretrained(target)
    _copy_tokenizer(minilm_path, target)
    return target


def build_plain_encoder(minilm_path: str, target: Path, seed: int = 0) -> Path:
    """A tiny BERT encoder with no head, like a bi-encoder's transformer (a fine-tuning start)."""
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    target.mkdir(parents=True, exist_ok=True)
    BertModel(_tiny_bert_config()).save_pretrained(target)
    _copy_tokenizer(minilm_path, target)
    return target


def build_stanford_colbert(minilm_path: str, target: Path, seed: int = 0, dim: int = 16) -> Path:
    """The colbert-ir/colbertv2.0 layout: a BERT with architectures ['HF_ColBERT'] and the
    projection stored as ``linear.weight`` beside the encoder weights, plus artifact.metadata."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertModel

    torch.manual_seed(seed)
    target.mkdir(parents=True, exist_ok=True)
    config = _tiny_bert_config()
    bert = BertModel(config, add_pooling_layer=False)
    linear = torch.nn.Linear(HIDDEN, dim, bias=False)
    state = {f"bert.{k}": v.contiguous() for k, v in bert.state_dict().items()}
    state["linear.weight"] = linear.weight.detach().contiguous()
    save_file(state, str(target / "model.safetensors"))
    config.architectures = ["HF_ColBERT"]
    config.save_pretrained(target)
    metadata = {
        "query_token_id": "[unused0]",
        "doc_token_id": "[unused1]",
        "query_maxlen": 32,
        "doc_maxlen": 180,
        "attend_to_mask_tokens": False,
        "mask_punctuation": True,
        "dim": dim,
        "similarity": "cosine",
    }
    (target / "artifact.metadata").write_text(json.dumps(metadata))
    _copy_tokenizer(minilm_path, target)
    return target


def build_bge_m3(minilm_path: str, target: Path, seed: int = 0, colbert_dim: int = HIDDEN) -> Path:
    """The BAAI/bge-m3 layout: an encoder plus colbert_linear.pt and sparse_linear.pt."""
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    target.mkdir(parents=True, exist_ok=True)
    BertModel(_tiny_bert_config(), add_pooling_layer=False).save_pretrained(target)
    torch.save(torch.nn.Linear(HIDDEN, colbert_dim).state_dict(), target / "colbert_linear.pt")
    torch.save(torch.nn.Linear(HIDDEN, 1).state_dict(), target / "sparse_linear.pt")
    _copy_tokenizer(minilm_path, target)
    return target
