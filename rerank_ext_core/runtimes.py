"""Precision choices and the fast CPU runtimes the scorers can run on.

``precision`` means the same for every backend:

* ``"fp32"``: full precision (the reference);
* ``"bf16"``: bfloat16 compute, used only where the CPU has it natively (AVX-512 BF16 or AMX);
  elsewhere it falls back to fp32 with a warning that says why;
* ``"int8"``: 8-bit weights (OpenVINO through nncf, ONNX Runtime dynamic quantisation);
* ``"fp16"``: half precision on a GPU;
* ``"auto"``: bf16 for OpenVINO on a CPU that has it, fp16 on a GPU, fp32 otherwise.

``backend="openvino"`` and ``backend="onnxruntime"`` run an export of the checkpoint made by
:mod:`rerank_ext_core.export` (once, then cached).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

import numpy as np

from rerank_ext_core._device import cpu_bf16_support, is_cuda
from rerank_ext_core._optional import require
from rerank_ext_core._validation import check_choice
from rerank_ext_core.export import ExportRequest, ensure_export

__all__ = ["PRECISIONS", "BACKEND_PRECISIONS", "ExportedSession", "Precision", "resolve_precision"]

logger = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "int8", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8", "fp16")
BACKEND_PRECISIONS: dict[str, tuple[str, ...]] = {
    "sentence-transformers": ("fp32", "bf16", "fp16"),
    "flag": ("fp32", "fp16"),
    "bge-m3": ("fp32", "fp16"),
    "openvino": ("fp32", "bf16", "int8"),
    "onnxruntime": ("fp32", "int8"),
}


def resolve_precision(backend: str, precision: str, device: str, *, use_fp16: bool | None = None) -> str:
    """The precision ``backend`` will run at. Refuses one the backend cannot give (naming those it
    can); bf16 on a CPU without native bf16 falls back to fp32 with a warning."""
    check_choice("precision", precision, PRECISIONS)
    on_gpu = is_cuda(device)
    if precision == "auto":
        if use_fp16 is not None:
            precision = "fp16" if use_fp16 else "fp32"
        elif on_gpu:
            precision = "fp16"
        elif backend == "openvino" and cpu_bf16_support()[0]:
            precision = "bf16"
        else:
            precision = "fp32"
    allowed = BACKEND_PRECISIONS[backend]
    if precision not in allowed:
        msg = (
            f"precision={precision!r} is not available with backend={backend!r}: choose one of "
            f"{', '.join(repr(p) for p in allowed)}, or another backend (int8: 'openvino' or 'onnxruntime'; "
            "bf16: 'openvino' or 'sentence-transformers')."
        )
        raise ValueError(msg)
    if precision == "bf16" and not on_gpu:
        supported, why = cpu_bf16_support()
        if not supported:
            logger.warning("precision='bf16' falls back to fp32: %s. precision='int8' is the fast choice here.", why)
            precision = "fp32"
    return precision


class ExportedSession:
    """One exported model on ONNX Runtime or OpenVINO; ``run`` takes the tokenizer's numpy arrays
    and returns the first output. Safe to share between threads."""

    def __init__(self, request: ExportRequest, precision: str, *, threads: int | None = None,
                 cache_dir: str | None = None) -> None:
        self.runtime = request.runtime
        self.folder = ensure_export(request, cache_dir)
        threads = threads or _torch_threads()
        self._lock = threading.Lock()
        if self.runtime == "onnxruntime":
            ort = require("onnxruntime", feature="backend='onnxruntime'", extra="onnx")
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(str(self.folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
            self.input_names = [item.name for item in self._session.get_inputs()]
        else:
            ov = require("openvino", feature="backend='openvino'", extra="openvino")
            core = ov.Core()
            config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                      "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
            self._compiled = core.compile_model(core.read_model(str(self.folder / "model.xml")), "CPU", config)
            self.input_names = [next(iter(port.get_names())) for port in self._compiled.inputs]

    def run(self, features: dict[str, Any]) -> np.ndarray:
        feed = {name: np.asarray(features[name], dtype=np.int64) for name in self.input_names}
        with self._lock:
            if self.runtime == "onnxruntime":
                return np.asarray(self._session.run(None, feed)[0])
            return np.asarray(self._compiled(feed)[0])


def _torch_threads() -> int:
    try:
        import torch

        return max(1, torch.get_num_threads())
    except ImportError:
        import os

        return max(1, os.cpu_count() or 1)
