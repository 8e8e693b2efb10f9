"""Pick the compute device once, the same way for every backend."""

from __future__ import annotations

from pathlib import Path

from rerank_ext_core._optional import require

__all__ = ["cpu_bf16_support", "is_cuda", "resolve_device", "resolve_fp16"]


_ACCEPTED = "'cpu', 'cuda', 'cuda:N' (a GPU index), 'mps', or None for the best available"


def resolve_device(device: str | None) -> str:
    """``None`` means the best available accelerator, else the CPU. A device that torch does not
    know, or that this machine lacks, is a ``ValueError`` that lists the accepted ones."""
    torch = require("torch", feature="Model scoring", extra="st")
    if device is not None:
        if not isinstance(device, str):
            msg = f"device must be a string or None, got {type(device).__name__} ({device!r}); use {_ACCEPTED}."
            raise TypeError(msg)
        try:
            parsed = torch.device(device)
        except (RuntimeError, ValueError):
            msg = f"device={device!r} is not a device torch knows; use {_ACCEPTED}."
            raise ValueError(msg) from None
        if parsed.type == "cuda" and (
            not torch.cuda.is_available() or (parsed.index or 0) >= torch.cuda.device_count()
        ):
            msg = (
                f"device={device!r}, but torch sees {torch.cuda.device_count()} CUDA GPU(s) here; "
                f"use {_ACCEPTED}."
            )
            raise ValueError(msg)
        if parsed.type == "mps" and not (
            getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        ):
            msg = f"device={device!r}, but MPS is not available here; use {_ACCEPTED}."
            raise ValueError(msg)
        if parsed.type not in {"cpu", "cuda", "mps"}:
            msg = f"device={device!r} is not supported; use {_ACCEPTED}."
            raise ValueError(msg)
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def is_cuda(device: object) -> bool:
    return isinstance(device, str) and device.startswith("cuda")


def resolve_fp16(use_fp16: bool | None, device: str) -> bool:
    """fp16 by default on a GPU only: on a CPU it is slower and less exact."""
    if use_fp16 is None:
        return is_cuda(device)
    return bool(use_fp16)


def cpu_bf16_support() -> tuple[bool, str]:
    """``(supported, why)``: whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), read
    from ``/proc/cpuinfo``; ``why`` says what was found, for the log line of a fallback."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False, "the CPU's features could not be read (/proc/cpuinfo), so native bf16 is not assumed"
    found = [flag for flag in ("avx512_bf16", "amx_bf16") if f" {flag}" in flags]
    if found:
        return True, f"this CPU has {' and '.join(found)}"
    return False, "this CPU has neither avx512_bf16 nor amx_bf16, so bf16 would be emulated (slower than fp32)"
