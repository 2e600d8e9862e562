"""Model names and aliases → embedders. The canonical id is what the index records."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from lookalike.errors import ModelUnavailableError
from lookalike.models.base import Embedder

DEFAULT_MODEL = "clip"
ALIASES = {
    "clip": "hf:openai/clip-vit-base-patch32",
    "clip-b16": "hf:openai/clip-vit-base-patch16",
    "clip-l14": "hf:openai/clip-vit-large-patch14",
    "siglip": "hf:google/siglip-base-patch16-224",
    "dinov2": "hf:facebook/dinov2-base#cls",
    "dinov2-mean": "hf:facebook/dinov2-base#mean",
    "dinov2-small": "hf:facebook/dinov2-small#cls",
    "dinov2-large": "hf:facebook/dinov2-large#cls",
    "efficientnet-lite0": "efficientnet-lite0",
    "phash": "phash",
    "dhash": "dhash",
    "sscd": "sscd",
    "sscd-distilled": "sscd-distilled",
    "sscd-torchscript": "sscd-torchscript",
    "pdq": "pdq",
}
BUILTIN_IDS = ("efficientnet-lite0", "phash", "dhash", "sscd", "sscd-distilled", "sscd-torchscript", "pdq")
# Copy-detection models: `dupes` and copy lookups use one of these when an index holds one. Cosine thresholds
# measured with benchmarks/vs_immaculate.py (dupes on 1,588 photos, tiles, copies and clip-art, docs/performance.md):
# sscd-distilled at 0.70 finds 77 % of (copy, original) pairs at 0.80 precision on photo pairs (0.60: 85 % / 0.57;
# 0.80: 63 % / 0.91; every wrong pair there is two sibling tiles of one photo); the hard retrieval set
# (benchmarks/copydetect_hard.py) reaches 90 % precision at 0.78. pdq: PDQ's reference 31 differing bits of 256.
COPY_THRESHOLDS = {"sscd": 0.70, "sscd-distilled": 0.70, "sscd-torchscript": 0.70, "pdq": 1 - 2 * 31 / 256}

_cache: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


def canonical_model_id(name: str) -> str:
    """'clip' → 'hf:openai/clip-vit-base-patch32'; a local directory → 'hf:/abs/dir'; 'org/name' → 'hf:org/name'.

    DINOv2 ids always state the pooling ('#cls' or '#mean') so two indexes never silently disagree on it.
    """
    name = name.strip()
    if name in ALIASES:
        return ALIASES[name]
    if name.startswith("hf:") or name in BUILTIN_IDS:
        canonical = name
    else:
        source, _, pooling = name.partition("#")
        expanded = os.path.expanduser(source)
        if os.path.isdir(expanded):
            source = str(Path(expanded).resolve())
        elif source.count("/") != 1 or source.startswith((".", "/")):
            known = ", ".join(ALIASES)
            raise ModelUnavailableError(
                f"unknown model '{name}': use one of {known}, a Hugging Face id such as "
                "openai/clip-vit-base-patch32, or a local checkpoint directory"
            )
        canonical = f"hf:{source}" + (f"#{pooling}" if pooling else "")
    if canonical.startswith("hf:") and "#" not in canonical and "dinov2" in canonical.lower():
        canonical += "#cls"
    return canonical


def load_embedder(name: str) -> Embedder:
    """Load (once per process) the embedder for a model name, alias or canonical id."""
    model_id = canonical_model_id(name)
    with _cache_lock:
        if model_id not in _cache:
            _cache[model_id] = _build(model_id)
        return _cache[model_id]


def _build(model_id: str) -> Embedder:
    if model_id == "efficientnet-lite0":
        from lookalike.models.efficientnet import EfficientNetLiteEmbedder

        return EfficientNetLiteEmbedder()
    if model_id in ("sscd", "sscd-distilled"):
        from lookalike.models.sscd import SscdOnnxEmbedder

        return SscdOnnxEmbedder(model_id)
    if model_id == "sscd-torchscript":
        from lookalike.models.sscd import SscdTorchScriptEmbedder

        return SscdTorchScriptEmbedder()
    if model_id == "pdq":
        from lookalike.models.pdq import PdqEmbedder

        return PdqEmbedder()
    if model_id in ("phash", "dhash"):
        from lookalike.models.hashes import PerceptualHashEmbedder

        return PerceptualHashEmbedder(model_id)
    source, _, pooling = model_id.removeprefix("hf:").partition("#")
    from lookalike.models.hf import HuggingFaceEmbedder

    return HuggingFaceEmbedder(source, model_id, pooling or None)
