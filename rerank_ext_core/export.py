"""Our own small exporter: a transformers checkpoint to ONNX (for ONNX Runtime) or OpenVINO IR, at a
precision, cached by the checkpoint's content.

optimum cannot be installed beside transformers 5, so the export is ``torch.onnx.export`` /
``ov.convert_model`` over a wrapper with positional inputs, and quantisation is ONNX Runtime's
``quantize_dynamic`` or nncf's ``compress_weights``. An export lives in
``<cache>/exports/<name>-<key>/`` where the key hashes the checkpoint's files, the task, the
runtime, the precision and the versions that shape the graph. A folder is trusted only when its
manifest matches the key and every file's hash; anything else (an interrupted build, a damaged or
stale file) is rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from rerank_ext_core._files import file_sha256
from rerank_ext_core._optional import require
from rerank_ext_core._validation import check_choice

__all__ = [
    "EXPORT_PRECISIONS",
    "EXPORT_RUNTIMES",
    "EXPORT_TASKS",
    "ExportRequest",
    "default_export_cache",
    "ensure_export",
]

logger = logging.getLogger(__name__)

EXPORT_FORMAT_VERSION = 1
EXPORT_RUNTIMES: tuple[str, ...] = ("onnxruntime", "openvino")
EXPORT_TASKS: tuple[str, ...] = ("cross-encoder", "token-encoder")
EXPORT_PRECISIONS: dict[str, tuple[str, ...]] = {"onnxruntime": ("fp32", "int8"), "openvino": ("fp32", "int8")}
"""What is baked into the exported files. bf16 is not among them: it is how OpenVINO *runs* an fp32
graph (``INFERENCE_PRECISION_HINT``), so bf16 and fp32 share one export."""
_MANIFEST = "manifest.json"
_EXTRA = {"onnxruntime": "onnx", "openvino": "openvino"}


@dataclass(frozen=True)
class ExportRequest:
    model_dir: str
    task: str
    """``"cross-encoder"`` (one logit per pair) or ``"token-encoder"`` (last hidden state)."""
    runtime: str
    precision: str

    def __post_init__(self) -> None:
        check_choice("task", self.task, EXPORT_TASKS)
        check_choice("runtime", self.runtime, EXPORT_RUNTIMES)
        check_choice("precision", self.precision, EXPORT_PRECISIONS[self.runtime], label=f"{self.runtime} export precision")


def default_export_cache() -> Path:
    """``<rerank-ext cache>/exports`` (``$RERANK_EXT_CACHE``, else ``~/.cache/rerank-ext``)."""
    from rerank_ext_core.evaluation.corpus_cache import default_cache_dir

    return default_cache_dir() / "exports"


def _versions(runtime: str) -> dict[str, str]:
    names = ["torch", "transformers", "onnx", "onnxruntime"] if runtime == "onnxruntime" else ["torch", "transformers", "openvino", "nncf"]
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def _key(request: ExportRequest, fingerprint: str) -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT_VERSION, "checkpoint_sha256": fingerprint, "task": request.task,
        "runtime": request.runtime, "precision": request.precision, "versions": _versions(request.runtime),
    }


def _valid(folder: Path, key: dict[str, Any]) -> tuple[bool, str]:
    manifest_path = folder / _MANIFEST
    if not manifest_path.exists():
        return False, "it has no manifest (an interrupted export)"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return False, f"its manifest is unreadable ({exc})"
    if manifest.get("key") != key:
        return False, "it was made from other files, options or library versions"
    for name, expected in (manifest.get("files") or {}).items():
        path = folder / name
        if not path.exists():
            return False, f"{name} is missing"
        if file_sha256(path) != expected:
            return False, f"{name} is damaged (its hash differs from the manifest's)"
    return bool(manifest.get("files")), "ok"


def ensure_export(request: ExportRequest, cache_dir: str | Path | None = None) -> Path:
    """The folder of the export ``request`` asks for: found in the cache and verified, or built
    now (atomically: a half-written export is never visible). Raises ``ImportError`` naming the
    extra when the runtime's packages are missing, ``RuntimeError`` when the export fails."""
    _require_runtime(request.runtime)
    root = Path(cache_dir) if cache_dir is not None else default_export_cache()
    from rerank_ext_core.evaluation.corpus_cache import model_fingerprint

    fingerprint = model_fingerprint(request.model_dir)
    key = _key(request, fingerprint)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:20]
    folder = root / f"{Path(request.model_dir).name or 'model'}-{request.task}-{request.runtime}-{request.precision}-{digest}"
    if folder.exists():
        ok, why = _valid(folder, key)
        if ok:
            return folder
        logger.warning("The cached export %s is not usable (%s): exporting again.", folder, why)
        shutil.rmtree(folder, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(root, folder.name)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        logger.info("Exporting %s for %s (%s); this happens once per checkpoint.", request.model_dir, request.runtime, request.precision)
        _build(request, staging)
        # Every file the export wrote (a model over 2 GB brings external weight files), all hashed.
        files = {path.name: file_sha256(path) for path in sorted(staging.iterdir()) if path.is_file()}
        manifest = {"key": key, "request": asdict(request), "files": files}
        (staging / _MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        try:
            os.replace(staging, folder)
        except OSError:  # another process finished the same export first
            if not _valid(folder, key)[0]:
                raise
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, ImportError):
            raise
        msg = f"Exporting {request.model_dir} to {request.runtime} ({request.precision}) failed: {type(exc).__name__}: {exc}"
        raise RuntimeError(msg) from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def _remove_abandoned_staging(root: Path, name: str, older_than: float = 3600.0) -> None:
    """Staging folders of exports killed mid-way (an hour old or more): nothing will finish them."""
    import time

    for path in root.glob(f".{name}.*"):
        try:
            if time.time() - path.stat().st_mtime > older_than:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def _require_runtime(runtime: str) -> None:
    feature = f"backend={runtime!r}"
    if runtime == "onnxruntime":
        require("onnxruntime", feature=feature, extra=_EXTRA[runtime])
        require("onnx", feature=feature, extra=_EXTRA[runtime])
    else:
        require("openvino", feature=feature, extra=_EXTRA[runtime])


def _torch_module(request: ExportRequest) -> tuple[Any, list[str], dict[str, Any]]:
    """The model as a module taking positional ``input_ids, attention_mask[, token_type_ids]``, its
    input names, and an example batch."""
    torch = require("torch", feature="model export", extra="st")
    transformers = require("transformers", feature="model export", extra="st")
    local = {"local_files_only": True}
    if request.task == "cross-encoder":
        model = transformers.AutoModelForSequenceClassification.from_pretrained(request.model_dir, **local)
    else:
        model = transformers.AutoModel.from_pretrained(request.model_dir, **local)
    model.eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(request.model_dir, **local)
    example = tokenizer(["a short query", "another"], ["a document of a few words", "more text"],
                        padding=True, return_tensors="pt")
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in example]
    task = request.task

    class Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                inputs["token_type_ids"] = token_type_ids
            output = self.model(**inputs)
            return output.logits if task == "cross-encoder" else output.last_hidden_state

    return Positional().eval(), names, {name: example[name] for name in names}


def _build(request: ExportRequest, folder: Path) -> None:
    module, names, example = _torch_module(request)
    if request.runtime == "onnxruntime":
        _export_onnx(module, names, example, folder, request)
    else:
        _export_openvino(module, names, example, folder, request)


def _export_onnx(module: Any, names: list[str], example: dict[str, Any], folder: Path, request: ExportRequest) -> None:
    import warnings

    import torch

    path = folder / "model.onnx"
    raw = folder / "model.fp32.onnx" if request.precision == "int8" else path
    output_axes = {0: "batch"} if request.task == "cross-encoder" else {0: "batch", 1: "sequence"}
    # The TorchScript exporter (dynamo=False) needs no onnxscript; its deprecation and tracer
    # warnings say nothing about this graph.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, tuple(example[name] for name in names), str(raw), input_names=names, output_names=["output"],
            dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in names}, "output": output_axes},
            opset_version=17, dynamo=False,
        )
    if request.precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Per-channel int8 weights of the MatMuls: the closest to fp32 of ONNX Runtime's dynamic
        # settings here (reduce_range is for CPUs without VNNI and costs accuracy).
        quantize_dynamic(str(raw), str(path), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])
        raw.unlink()


def _export_openvino(module: Any, names: list[str], example: dict[str, Any], folder: Path, request: ExportRequest) -> None:
    import torch

    import warnings

    ov = require("openvino", feature="backend='openvino'", extra="openvino")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings say nothing about this graph
        model = ov.convert_model(module, example_input={name: example[name] for name in names})
    for port, name in zip(model.inputs, names):
        port.get_tensor().set_names({name})
    model.outputs[0].get_tensor().set_names({"output"})
    if request.precision == "int8":
        nncf = require("nncf", feature="backend='openvino', precision='int8'", extra="openvino")
        model = nncf.compress_weights(model)  # int8 weights, per channel
    # compress_to_fp16=False: the default would store fp16 weights and lose fp32 exactness.
    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)
