"""What lookalike knows about each model, in one place: id, aliases, modalities, preprocessing, and the default
threshold of every verb that needs one. Help texts, `info`, `dupes`, `recognize` and `compare` all read it.

A threshold here is a *default*: `lookalike calibrate` measures one for a collection and stores it in that
index, which then wins (see `lookalike.thresholds`). Each spec says where its values come from, so a value that
was never measured for that model says so instead of passing for one that was.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE = ("image",)
IMAGE_TEXT = ("image", "text")


@dataclass(frozen=True)
class VerbThresholds:
    """Cosine thresholds per verb. `dupes` is also `compare`'s "near-duplicate" band and `examples` its
    "same subject" band; below `examples`, `compare` says "different"."""

    dupes: float  # `dupes`: two images are near-duplicates at or above this
    examples: float  # `recognize` against example images of a category
    prompts: float | None  # `recognize` against text prompts (None: the model has no text tower)
    source: str  # where the values come from
    copy_score: float | None = None  # copy models: `dupes` groups by the copy score (lookalike.dupes_grouping)


@dataclass(frozen=True)
class ModelSpec:
    id: str  # the canonical id an index records
    aliases: tuple[str, ...]
    modalities: tuple[str, ...]
    preprocessing: str
    thresholds: VerbThresholds
    summary: str
    copy_detection: bool = False  # serves `dupes` and copy lookups when an index holds it beside another model

    @property
    def name(self) -> str:
        """The short name people type (the first alias), else the id."""
        return self.aliases[0] if self.aliases else self.id


_CLIP = VerbThresholds(0.92, 0.92, 0.24, "dupes: the copy-detection literature's 0.92 for CLIP; recognize: the "
                       "tutorials' 0.92 rule of thumb, prompts measured on the sample photos (~0.2-0.35 for a match)")
_CLIP_FAMILY = VerbThresholds(0.92, 0.92, 0.24, "CLIP ViT-B/32's values (same training recipe); not measured for "
                              "this size: `lookalike calibrate` measures it on your images")
_SIGLIP = VerbThresholds(0.92, 0.85, 0.10, "estimates: SigLIP's image-text cosines sit lower than CLIP's (its "
                         "sigmoid loss has a learned bias); not measured here: `lookalike calibrate`")
_DINO = VerbThresholds(0.75, 0.60, None, "dupes: DINOv2 copy-detection results (ViT-B/14, CLS); recognize: held-out "
                       "crops of the sample photos")
_DINO_FAMILY = VerbThresholds(0.75, 0.60, None, "DINOv2 ViT-B/14's values; not measured for this size or pooling: "
                              "`lookalike calibrate` measures it on your images")
_EFFICIENTNET = VerbThresholds(0.75, 0.55, None, "measured on the sample photos and their edited copies (dupes) and "
                               "on held-out crops of them (recognize)")
_HASH = VerbThresholds(1 - 2 * 10 / 64, 1 - 2 * 10 / 64, None, "10 differing bits of 64, the usual perceptual-hash "
                       "rule (cosine = 1 - 2 x bits / 64)")
# benchmarks/vs_immaculate.py (1,588 photos, tiles, copies and clip-art): sscd-distilled at 0.70 finds 77 % of
# (copy, original) pairs at 0.80 precision on photo pairs; benchmarks/copydetect_hard.py reaches 90 % at 0.78.
# Its dupes group by the copy score at 0.04: recall 0.90 of (copy, original) pairs at 0.96 precision (same sweep).
_SSCD = VerbThresholds(0.70, 0.70, None, "measured with benchmarks/vs_immaculate.py and copydetect_hard.py "
                       "(docs/performance.md); recognize uses the copy threshold: a match is a copy of an example",
                       copy_score=0.04)
_PDQ = VerbThresholds(1 - 2 * 31 / 256, 1 - 2 * 31 / 256, None, "PDQ's reference: 31 differing bits of 256")
# a model lookalike has no spec for (any Hugging Face checkpoint): generic values, and `info` says so
FALLBACK_PROMPTS = 0.20
FALLBACK = VerbThresholds(0.90, 0.80, FALLBACK_PROMPTS, "no default measured for this model (generic values): run "
                          "`lookalike calibrate` for a measured one")

_CLIP_PRE = "shorter side 224 (bicubic), centre crop 224, CLIP mean/std"
SPECS: tuple[ModelSpec, ...] = (
    ModelSpec("hf:openai/clip-vit-base-patch32", ("clip",), IMAGE_TEXT, _CLIP_PRE, _CLIP,
              "CLIP ViT-B/32, text and image search; the default"),
    ModelSpec("hf:openai/clip-vit-base-patch16", ("clip-b16",), IMAGE_TEXT, _CLIP_PRE, _CLIP_FAMILY,
              "CLIP ViT-B/16, finer detail for ~4x the compute"),
    ModelSpec("hf:openai/clip-vit-large-patch14", ("clip-l14",), IMAGE_TEXT, _CLIP_PRE, _CLIP_FAMILY,
              "CLIP ViT-L/14, the most accurate CLIP for ~18x the compute"),
    ModelSpec("hf:google/siglip-base-patch16-224", ("siglip",), IMAGE_TEXT, "224x224 (bicubic), mean/std 0.5",
              _SIGLIP, "SigLIP B/16, text and image search"),
    ModelSpec("hf:facebook/dinov2-base#cls", ("dinov2",), IMAGE, "shorter side 256, centre crop 224, ImageNet "
              "mean/std; CLS token", _DINO, "DINOv2 ViT-B/14, image only, strong on near-duplicates"),
    ModelSpec("hf:facebook/dinov2-base#mean", ("dinov2-mean",), IMAGE, "as dinov2; mean of the patch tokens",
              _DINO_FAMILY, "DINOv2 ViT-B/14, mean-pooled patches"),
    ModelSpec("hf:facebook/dinov2-small#cls", ("dinov2-small",), IMAGE, "as dinov2", _DINO_FAMILY,
              "DINOv2 ViT-S/14, faster"),
    ModelSpec("hf:facebook/dinov2-large#cls", ("dinov2-large",), IMAGE, "as dinov2", _DINO_FAMILY,
              "DINOv2 ViT-L/14, more accurate, slower"),
    ModelSpec("efficientnet-lite0", ("efficientnet-lite0",), IMAGE, "shorter side 256, centre crop 224, mean/std 0.5",
              _EFFICIENTNET, "EfficientNet-Lite0 on ImageNet, small, fast, offline"),
    ModelSpec("phash", ("phash",), IMAGE, "32x32 greyscale DCT, 64 bits", _HASH, "perceptual hash, 64 bits"),
    ModelSpec("dhash", ("dhash",), IMAGE, "9x8 greyscale gradient, 64 bits", _HASH, "difference hash, 64 bits"),
    ModelSpec("sscd", ("sscd",), IMAGE, "shorter side 288, no crop, ImageNet mean/std (inside the graph)", _SSCD,
              "Meta's SSCD copy detection, ResNet-50 int8 ONNX", copy_detection=True),
    ModelSpec("sscd-distilled", ("sscd-distilled",), IMAGE, "shorter side 288, no crop (inside the graph)", _SSCD,
              "a MobileNetV4 student of SSCD, fast copy detection", copy_detection=True),
    ModelSpec("sscd-torchscript", ("sscd-torchscript",), IMAGE, "shorter side 288, no crop, ImageNet mean/std",
              _SSCD, "Meta's published SSCD TorchScript checkpoint, needs torch", copy_detection=True),
    ModelSpec("pdq", ("pdq",), IMAGE, "512 px downsample, 64x64 luminance, 16x16 DCT, 256 bits", _PDQ,
              "Meta's PDQ hash, very fast, finds flips and turns", copy_detection=True),
)
_BY_ID = {spec.id: spec for spec in SPECS}


def spec_for(model_id: str) -> ModelSpec | None:
    """The spec of a canonical model id, or None for a model lookalike has no spec for."""
    return _BY_ID.get(model_id)


def thresholds_for(model_id: str) -> VerbThresholds:
    spec = spec_for(model_id)
    return spec.thresholds if spec else FALLBACK


def short_name(model_id: str) -> str:
    spec = spec_for(model_id)
    return spec.name if spec else model_id


def threshold_help(verb: str) -> str:
    """'clip/clip-b16 0.92, efficientnet-lite0 0.75, …; other models 0.9' for a verb's --threshold help."""
    by_value: dict[float, list[str]] = {}
    for spec in SPECS:
        value = getattr(spec.thresholds, verb)
        if value is not None:
            by_value.setdefault(value, []).append(spec.name)
    shown = [f"{'/'.join(names)} {_number(value)}" for value, names in by_value.items()]
    return ", ".join(shown) + f"; other models {_number(getattr(FALLBACK, verb))}"


def _number(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")


def models_help() -> str:
    """The --model help: each short name with what it is for."""
    return "; ".join(f"{spec.name} ({spec.summary})" for spec in SPECS)
