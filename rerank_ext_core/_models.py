"""Resolve a model name to local files without ever waiting on the network."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ModelNotFoundError", "hub_is_offline", "resolve_model_path"]


class ModelNotFoundError(OSError):
    """The model is neither a local directory nor in the Hugging Face cache, and cannot be downloaded."""


_TRUE = {"1", "true", "yes", "on"}


def hub_is_offline() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def resolve_model_path(model: str | os.PathLike[str], *, purpose: str = "model") -> str:
    """Return a local directory holding ``model``.

    ``model`` is a local directory, or a hub id that is already in the Hugging Face cache, or (when
    the hub is reachable and offline mode is off) a hub id to download. Anything else fails at once
    with a message that says how to pass a local path.
    """
    path = Path(os.fspath(model)).expanduser()
    if path.is_dir():
        return str(path.resolve())
    model_id = os.fspath(model)
    if path.exists() or model_id.startswith((".", "/", "~")) or model_id.count("/") > 1:
        msg = (
            f"The {purpose} path {model_id!r} is not a directory. Pass a local directory holding "
            "the model files (config.json, weights, tokenizer) or a Hugging Face hub id."
        )
        raise ModelNotFoundError(msg)

    from huggingface_hub import snapshot_download  # light: installed with transformers

    try:
        return snapshot_download(model_id, local_files_only=True)
    except Exception:  # noqa: BLE001 - any cache miss means "not available locally"
        pass
    if hub_is_offline():
        msg = (
            f"The {purpose} {model_id!r} is not in the local Hugging Face cache and the hub is "
            "offline (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set). Pass a local directory instead, "
            f"e.g. model='/path/to/{model_id.split('/')[-1]}', or download it on a connected "
            "machine with `huggingface-cli download "
            f"{model_id}` and copy the cache over."
        )
        raise ModelNotFoundError(msg)
    try:
        return snapshot_download(model_id, etag_timeout=5)
    except Exception as exc:  # noqa: BLE001
        msg = (
            f"Could not download the {purpose} {model_id!r} from the Hugging Face hub ({type(exc).__name__}: "
            f"{exc}). Pass a local directory holding the model files instead."
        )
        raise ModelNotFoundError(msg) from None
