"""Pick the compute device once, the same way for every backend."""

from __future__ import annotations

from rerank_ext_core._optional import require

__all__ = ["resolve_device", "resolve_fp16"]


def resolve_device(device: str | None) -> str:
    """``None`` means the best available accelerator, else the CPU."""
    torch = require("torch", feature="Model scoring", extra="st")
    if device is not None:
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_fp16(use_fp16: bool | None, device: str) -> bool:
    """fp16 by default on a GPU only: on a CPU it is slower and less exact."""
    if use_fp16 is None:
        return device.startswith("cuda")
    return bool(use_fp16)
