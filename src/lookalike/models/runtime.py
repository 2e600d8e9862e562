"""Inference runtimes for the image towers: torch fp32, torch bf16 autocast, ONNX Runtime fp32 and int8.

`auto` picks the fastest runtime that keeps every vector within cosine 0.99 of torch fp32 (measured in
tests/test_models_runtime.py and benchmarks/embed_throughput.py): ONNX Runtime int8 (dynamic quantisation of
MatMul/Gemm) for transformers (CLIP, SigLIP, DINOv2), ONNX Runtime fp32 for CNNs (EfficientNet: dynamic int8
convolutions are slow and inexact, static int8 measured cosine 0.96 — below the bar). Without onnxruntime,
`auto` is torch fp32. Graphs live in the model cache (`lookalike.models.cache`); torch is imported only to
export one the first time (`lookalike.models.export`) or when a torch runtime runs.

Session start-up (benchmarks/cold_start.py, ViT-B/32 int8 on this 2-core machine): ONNX Runtime's graph
optimisation is done once and its result saved next to the graph (≈ 0.1 s saved per process), with the weights
as an external file that ONNX Runtime memory-maps instead of copying (a text query touches a few rows of the
token table, not 100 MB). Weight pre-packing costs ≈ 0.25 s at start and gives ≈ 15 % throughput, so a session
packs only once a batch of PREPACK_FROM inputs arrives: a one-image query never pays for it, indexing always does.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import LookalikeError

RUNTIMES = ("auto", "torch", "bf16", "onnx", "onnx-int8")
PREPACK_FROM = 8  # batch size from which a session re-opens with pre-packed weights (see the module docstring)
_lock = threading.Lock()


_process_default = "auto"  # for embedders outside an index; an index's own runtime is in its settings


def default_runtime() -> str:
    return _process_default


def set_default_runtime(runtime: str) -> None:
    """The runtime of embedders that no index settings choose for (`compare` outside an index, tests)."""
    global _process_default
    check_runtime(runtime)
    _process_default = runtime


def runtime_of(embedder) -> str:
    """The runtime an embedder runs on as asked (its index's setting, else the process default), for another
    process (a Ray worker) to load the same model the same way."""
    return getattr(embedder, "requested_runtime", None) or _process_default


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise LookalikeError(f"unknown runtime '{runtime}': choose one of {', '.join(RUNTIMES)}")
    return runtime


def onnx_available() -> bool:
    """onnxruntime runs cached graphs; exporting a new one also needs onnx (checked when it happens)."""
    return importlib.util.find_spec("onnxruntime") is not None


def resolve(runtime: str, transformer: bool) -> str:
    if runtime != "auto":
        if runtime.startswith("onnx") and not onnx_available():
            raise LookalikeError(f"runtime {runtime} needs `pip install 'lookalike[onnx]'` (onnx, onnxruntime)")
        return runtime
    if not onnx_available():
        return "torch"
    return "onnx-int8" if transformer else "onnx"


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
    """An image tower's cached ONNX graph (dynamic batch), exported by `export()` if it is not there yet."""

    def __init__(self, graph: Path, export: Callable[[], object], name: str) -> None:
        self.name = name
        with _lock:
            if not graph.exists():
                export()
        self.session = OnnxSession(graph)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run({"pixel_values": np.ascontiguousarray(batch, dtype=np.float32)})


class OnnxSession:
    """One graph run by ONNX Runtime, opened on first use: without weight pre-packing for small batches
    (queries), re-opened with it the first time a batch of PREPACK_FROM or more arrives (indexing)."""

    def __init__(self, graph: Path) -> None:
        self.graph = graph
        self._session: Any = None  # an onnxruntime.InferenceSession, opened on first use
        self._packed = False
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        packed = len(next(iter(feeds.values()))) >= PREPACK_FROM
        with self._lock:
            if self._session is None or (packed and not self._packed):
                self._session, self._packed = open_session(self.graph, prepack=packed), packed
            session = self._session
        return session.run(None, feeds)[0]


def open_session(graph: Path, prepack: bool = True):
    """An InferenceSession on the optimised copy of `graph` saved for this ONNX Runtime version and CPU,
    optimising and saving it first if needed."""
    import onnxruntime as ort

    from lookalike.models.cache import hardware_tag

    optimized = graph.with_name(f"{graph.stem}.opt-{ort.__version__}-{hardware_tag()}.onnx")
    if optimized.exists():
        try:
            return ort.InferenceSession(str(optimized), _options(ort, prepack, optimize=False),
                                        providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - a damaged copy is rebuilt from the graph below
            optimized.unlink(missing_ok=True)
    return _optimize_and_save(ort, graph, optimized, prepack)


def _optimize_and_save(ort, graph: Path, optimized: Path, prepack: bool):
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    temporary = optimized.with_name(f"{optimized.stem}.tmp{token}.onnx")
    data = f"{optimized.stem}.{token}.data"  # referenced by name from the graph, so it keeps this name
    options = _options(ort, prepack, optimize=True)
    options.optimized_model_filepath = str(temporary)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", data)
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    try:
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - some graphs cannot be saved optimised: run them unsaved
        (optimized.parent / data).unlink(missing_ok=True)
        temporary.unlink(missing_ok=True)
        return ort.InferenceSession(str(graph), _options(ort, prepack, optimize=True),
                                    providers=["CPUExecutionProvider"])
    if optimized.exists():  # another process saved one meanwhile: keep theirs
        temporary.unlink(missing_ok=True)
        (optimized.parent / data).unlink(missing_ok=True)
    else:
        os.replace(temporary, optimized)
    return session


def _options(ort, prepack: bool, optimize: bool):
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # saving an ORT_ENABLE_ALL graph warns that it is hardware-specific: it's keyed so
    # An optimised graph loads as saved; re-running the optimisers on it finds nothing and costs ≈ 0.1 s.
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # steadier on busy machines
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    return options
