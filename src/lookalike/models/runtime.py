"""Inference runtimes for the image towers: torch fp32, torch bf16 autocast, ONNX Runtime fp32 and int8.

`auto` picks the fastest runtime that keeps every vector within cosine 0.99 of torch fp32 (measured in
tests/test_models_runtime.py and benchmarks/embed_throughput.py): ONNX Runtime int8 (dynamic quantisation of
MatMul/Gemm) for transformers (CLIP, SigLIP, DINOv2), ONNX Runtime fp32 for CNNs (EfficientNet: dynamic int8
convolutions are slow and inexact, static int8 measured cosine 0.96 — below the bar). Without onnxruntime,
`auto` is torch fp32. Exported models are cached on disk, keyed by model id, runtime and library versions.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from lookalike.errors import LookalikeError

RUNTIMES = ("auto", "torch", "bf16", "onnx", "onnx-int8")
_lock = threading.Lock()


def requested_runtime() -> str:
    runtime = os.environ.get("LOOKALIKE_RUNTIME", "auto")
    if runtime not in RUNTIMES:
        raise LookalikeError(f"unknown runtime '{runtime}': choose one of {', '.join(RUNTIMES)}")
    return runtime


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve(runtime: str, transformer: bool) -> str:
    if runtime != "auto":
        if runtime.startswith("onnx") and not onnx_available():
            raise LookalikeError(f"runtime {runtime} needs `pip install 'lookalike[onnx]'` (onnx, onnxruntime)")
        return runtime
    if not onnx_available():
        return "torch"
    return "onnx-int8" if transformer else "onnx"


def cache_dir() -> Path:
    base = os.environ.get("LOOKALIKE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "lookalike")
    return Path(base) / "onnx"


def writable_cache_dir() -> Path:
    """`cache_dir()`, or a temporary folder when that cannot be written (read-only home, a container without
    ~/.cache): the export is then redone per process instead of model loading failing."""
    import tempfile

    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return folder
    except OSError as exc:
        global _fallback
        if _fallback is None:  # private to this process: nobody else can plant a model file in it
            _fallback = Path(tempfile.mkdtemp(prefix="lookalike-onnx-"))
            logging.getLogger("lookalike").warning("cannot write the model cache %s (%s); using %s for this run",
                                                   folder, exc.strerror or exc, _fallback)
        return _fallback


_fallback: Path | None = None


class TorchRuntime:
    name = "torch"

    def __init__(self, forward, bf16: bool = False) -> None:
        self.forward = forward
        self.bf16 = bf16
        self.name = "bf16" if bf16 else "torch"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        pixels = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.forward(pixels).float().numpy()


class OnnxRuntime:
    """An ONNX export of the tower (dynamic batch), optionally int8-quantised, run by ONNX Runtime."""

    def __init__(self, forward, owner, key: str, input_shape: tuple[int, int, int], int8: bool) -> None:
        self.name = "onnx-int8" if int8 else "onnx"
        path = self._model_file(forward, owner, key, input_shape, int8)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # steadier on busy machines
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    @staticmethod
    def _model_file(forward, owner, key: str, input_shape, int8: bool) -> Path:
        import onnxruntime
        import torch

        tag = hashlib.sha256(f"{key}|{torch.__version__}|{onnxruntime.__version__}|{input_shape}".encode())
        for name, tensor in owner.state_dict().items():  # same id, other weights (a re-saved local checkpoint)
            tag.update(name.encode())
            tag.update(tensor.detach().reshape(-1)[:16].float().numpy().tobytes())
        folder = writable_cache_dir()
        fp32 = folder / f"{tag.hexdigest()[:20]}.onnx"
        target = folder / f"{tag.hexdigest()[:20]}.int8.onnx" if int8 else fp32
        with _lock:
            if not target.exists():
                folder.mkdir(parents=True, exist_ok=True)
                if not fp32.exists():
                    _export(forward, owner, fp32, input_shape)
                if int8:
                    _quantize(fp32, target)
        return target


class _Wrap:
    """Any callable as an nn.Module whose parameters are `owner`'s (so weights export as initialisers)."""

    def __new__(cls, forward, owner):
        import torch

        class Module(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.owner = owner

            def forward(self, x):
                return forward(x)

        return Module().eval()


def _export(forward, owner, path: Path, input_shape) -> None:
    import torch

    module = _Wrap(forward, owner)
    example = torch.randn(2, *input_shape)  # batch ≥ 2 keeps the batch dimension symbolic
    temporary = path.with_suffix(f".tmp{os.getpid()}.onnx")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (example,), str(temporary), dynamo=True, external_data=False,
                              input_names=["pixel_values"], output_names=["embeds"],
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},), verbose=False)
        except Exception:  # older or unusual models: the TorchScript exporter
            torch.onnx.export(module, (example,), str(temporary), dynamo=False, opset_version=17,
                              input_names=["pixel_values"], output_names=["embeds"],
                              dynamic_axes={"pixel_values": {0: "batch"}, "embeds": {0: "batch"}})
    os.replace(temporary, path)


def _quantize(source: Path, target: Path) -> None:
    """int8 weights for MatMul/Gemm only: the linear layers that dominate a ViT; activations stay float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_suffix(f".pre{os.getpid()}.onnx")
    temporary = target.with_suffix(f".tmp{os.getpid()}.onnx")
    logging.getLogger().setLevel(logging.ERROR)
    try:
        quant_pre_process(str(source), str(prepared))
        quantize_dynamic(str(prepared), str(temporary), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"])
        os.replace(temporary, target)
    finally:
        prepared.unlink(missing_ok=True)
        temporary.unlink(missing_ok=True)
