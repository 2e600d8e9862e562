"""Model names and aliases → embedders. The canonical id is what the index records."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from lookalike.errors import ModelUnavailableError
from lookalike.models.base import Embedder
from lookalike.models.runtime import check_runtime, default_runtime
from lookalike.models.specs import SPECS

DEFAULT_MODEL = "clip"
ALIASES = {alias: spec.id for spec in SPECS for alias in spec.aliases}
BUILTIN_IDS = tuple(spec.id for spec in SPECS if not spec.id.startswith("hf:"))
# Copy-detection models: `dupes` and copy lookups use one of these when an index holds one (see `specs`).
COPY_THRESHOLDS = {spec.id: spec.thresholds.dupes for spec in SPECS if spec.copy_detection}

_cache: dict[tuple[str, str | None], Embedder] = {}
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


def load_embedder(name: str, runtime: str | None = None) -> Embedder:
    """Load (once per process and runtime) the embedder for a model name, alias or canonical id. `runtime`
    (an index's setting) chooses how its image tower runs; None: the process default."""
    model_id = canonical_model_id(name)
    if runtime is not None and check_runtime(runtime) == default_runtime():
        runtime = None  # the same embedder as the process default's: one copy of the weights
    with _cache_lock:
        if (model_id, runtime) not in _cache:
            embedder = _build(model_id)
            if runtime is not None and hasattr(embedder, "requested_runtime"):
                setattr(embedder, "requested_runtime", runtime)  # noqa: B010 - not every embedder has a runtime
            _cache[model_id, runtime] = embedder
        return _cache[model_id, runtime]


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
