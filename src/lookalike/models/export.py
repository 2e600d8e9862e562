"""torch → ONNX, once per model: the only place the ONNX path needs torch (and onnx, for int8 quantisation).

Graphs are exported with a symbolic batch (and, for text, sequence) dimension and written into the model cache
under a temporary name, then renamed; a process that finds the file never imports torch.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _as_module(forward: Callable, owner) -> torch.nn.Module:
    """Any callable as an nn.Module whose parameters are `owner`'s (so weights export as initialisers)."""
    import torch

    class Module(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.owner = owner

        def forward(self, *inputs):
            return forward(*inputs)

    return Module().eval()


Axis = tuple[str, int, int]  # name, min, max of a symbolic dimension
BATCH: Axis = ("batch", 1, 4096)


def export_graph(forward: Callable, owner, path: Path, examples: dict, dynamic: dict[str, dict[int, Axis]]) -> None:
    """Export `forward(*examples.values())` to `path`; `dynamic` gives the symbolic axes of each input.

    Examples need a batch of ≥ 2 (and, for text, two lengths) so those dimensions stay symbolic."""
    import torch

    module = _as_module(forward, owner)
    names = list(examples)
    dims: dict[str, torch.export.Dim] = {}
    shapes = tuple({axis: dims.setdefault(label, torch.export.Dim(label, min=low, max=high))
                    for axis, (label, low, high) in dynamic[name].items()} for name in names)
    temporary = path.with_suffix(f".tmp{os.getpid()}.onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    args = tuple(examples.values())
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, args, str(temporary), dynamo=True, external_data=False, input_names=names,
                              output_names=["embeds"], dynamic_shapes=shapes, verbose=False)
        except Exception:  # older or unusual models: the TorchScript exporter
            axes = {name: {axis: spec[0] for axis, spec in dynamic[name].items()} for name in names}
            axes["embeds"] = {0: "batch"}
            torch.onnx.export(module, args, str(temporary), dynamo=False, opset_version=17, input_names=names,
                              output_names=["embeds"], dynamic_axes=axes)
    os.replace(temporary, path)


def export_image_graph(forward: Callable, owner, folder: Path, input_shape: tuple[int, int, int], int8: bool) -> Path:
    """`vision.onnx` (fp32) and, for int8, `vision.int8.onnx` quantised from it; returns the one asked for."""
    import torch

    fp32 = folder / "vision.onnx"
    if not fp32.exists():
        export_graph(forward, owner, fp32, {"pixel_values": torch.randn(2, *input_shape)},
                     {"pixel_values": {0: BATCH}})
    if not int8:
        return fp32
    target = folder / "vision.int8.onnx"
    if not target.exists():
        quantize_int8(fp32, target)
    return target


def quantize_int8(source: Path, target: Path) -> None:
    """int8 weights for MatMul/Gemm only: the linear layers that dominate a ViT; activations stay float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_suffix(f".pre{os.getpid()}.onnx")
    temporary = target.with_suffix(f".tmp{os.getpid()}.onnx")
    logging.getLogger().setLevel(logging.ERROR)
    try:
        try:
            quant_pre_process(str(source), str(prepared))
        except Exception:  # noqa: BLE001 - symbolic shape inference fails on some graphs (SigLIP's attention)
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(temporary), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"])
        os.replace(temporary, target)
    finally:
        prepared.unlink(missing_ok=True)
        temporary.unlink(missing_ok=True)
