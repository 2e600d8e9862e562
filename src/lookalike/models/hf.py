"""Hugging Face transformers checkpoints by hub id or local directory: CLIP and SigLIP (image + text), DINOv2.

The checkpoint's own `config.json` decides the family, so any CLIP/SigLIP/DINOv2 fine-tune loads the same way.
CLIP's towers load separately: an image-only run never pays for the text tower, and a text query never
pays for the vision tower.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
from PIL import Image

from lookalike.errors import ModelUnavailableError
from lookalike.models.base import Preprocess, TorchImageEmbedder, l2_normalize

TEXT_FAMILIES = ("clip", "siglip", "siglip2")
IMAGE_FAMILIES = ("dinov2", "dinov2_with_registers")
POOLINGS = ("cls", "mean")


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)


def _unavailable(source: str, exc: Exception) -> ModelUnavailableError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelUnavailableError(
        f"could not load model '{source}' ({reason[:200]}). Remedies: pass a local checkpoint directory "
        "(--model /path/to/model), or set HF_HUB_OFFLINE=1 with the weights already in the Hugging Face cache, "
        "or use --model efficientnet-lite0, which works offline."
    )


def _from_pretrained(cls, source: str, **kwargs):
    try:
        return cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise _unavailable(source, exc) from exc
    except Exception as exc:  # the hub client raises many kinds of errors when offline
        if "huggingface_hub" in type(exc).__module__ or "requests" in type(exc).__module__:
            raise _unavailable(source, exc) from exc
        raise


def _preprocess_from(source: str, default_mean, default_std) -> Preprocess:
    from transformers import AutoImageProcessor

    processor = _from_pretrained(AutoImageProcessor, source)
    size, crop = processor.size, getattr(processor, "crop_size", None)
    edge = _field(size, "shortest_edge")
    if edge:
        centre_crop = crop and getattr(processor, "do_center_crop", True)
        crop_hw = (_field(crop, "height"), _field(crop, "width")) if centre_crop else (edge, edge)
    else:  # SigLIP resizes straight to a square
        edge = _field(size, "height")
        crop_hw = (edge, _field(size, "width"))
    return Preprocess(
        shortest_edge=int(edge),
        crop=(int(crop_hw[0]), int(crop_hw[1])),
        mean=tuple(float(v) for v in (processor.image_mean or default_mean)),
        std=tuple(float(v) for v in (processor.image_std or default_std)),
        resample=int(getattr(processor, "resample", Image.Resampling.BICUBIC) or Image.Resampling.BICUBIC),
    )


def _field(mapping, key: str):
    """Processor sizes are dicts in transformers 4 and SizeDict objects in 5."""
    if mapping is None:
        return None
    return mapping.get(key) if isinstance(mapping, dict) else getattr(mapping, key, None)


def model_family(source: str) -> str:
    from transformers import AutoConfig

    _quiet_transformers()
    return _from_pretrained(AutoConfig, source).model_type


class HuggingFaceEmbedder(TorchImageEmbedder):
    """CLIP / SigLIP / DINOv2 through transformers. `pooling` applies to DINOv2: CLS token or mean of patches."""

    def __init__(self, source: str, model_id: str, pooling: str | None = None) -> None:
        _quiet_transformers()
        self.source = source
        self.id = model_id
        self.family = model_family(source)
        if self.family not in TEXT_FAMILIES + IMAGE_FAMILIES:
            raise ModelUnavailableError(
                f"model '{source}' is a '{self.family}' checkpoint; lookalike supports CLIP, SigLIP and DINOv2"
            )
        self.pooling = pooling or "cls"
        if self.pooling not in POOLINGS:
            raise ModelUnavailableError(f"unknown pooling '{pooling}'; choose one of {', '.join(POOLINGS)}")
        self.modalities = frozenset({"image", "text"} if self.family in TEXT_FAMILIES else {"image"})
        self.preprocess = _preprocess_from(source, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        self._lock = threading.Lock()
        self._vision = None
        self._text = None
        self._tokenizer = None
        self.dim = self._output_dim()

    def _output_dim(self) -> int:
        from transformers import AutoConfig

        config = _from_pretrained(AutoConfig, self.source)
        if self.family == "clip":
            return int(config.projection_dim)
        if self.family in TEXT_FAMILIES:
            return int(config.vision_config.hidden_size)
        return int(config.hidden_size)

    def preprocessing(self) -> dict:
        return {**self.preprocess.describe(), "family": self.family, "pooling": self.pooling}

    # -- towers, loaded on first use ---------------------------------------------------------------
    def _vision_tower(self):
        with self._lock:
            if self._vision is None:
                import transformers

                if self.family == "clip":
                    self._vision = self._clip_tower(transformers.CLIPVisionModelWithProjection, "vision_config")
                else:
                    self._vision = _from_pretrained(transformers.AutoModel, self.source).eval()
            return self._vision

    def _text_tower(self):
        with self._lock:
            if self._text is None:
                import transformers

                self._tokenizer = _from_pretrained(transformers.AutoTokenizer, self.source)
                if self.family == "clip":
                    self._text = self._clip_tower(transformers.CLIPTextModelWithProjection, "text_config")
                else:
                    self._text = _from_pretrained(transformers.AutoModel, self.source).eval()
            return self._text, self._tokenizer

    def _clip_tower(self, cls, part: str):
        """One CLIP tower from a full checkpoint; the tower's config must carry the shared projection size."""
        from transformers import AutoConfig

        full = _from_pretrained(AutoConfig, self.source)
        config = getattr(full, part)
        config.projection_dim = full.projection_dim
        return _from_pretrained(cls, self.source, config=config).eval()

    transformer = True

    def _torch_module(self):
        return self._vision_tower()

    def _image_features(self, pixel_values):
        model = self._vision_tower()
        if self.family == "clip":
            return model(pixel_values=pixel_values).image_embeds
        if self.family in TEXT_FAMILIES:
            return _features(model.get_image_features(pixel_values=pixel_values))
        hidden = model(pixel_values=pixel_values)
        if self.pooling == "mean":
            return hidden.last_hidden_state[:, 1:].mean(dim=1)
        return hidden.pooler_output

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        if "text" not in self.modalities:
            return super().embed_texts(texts)
        import torch

        model, tokenizer = self._text_tower()
        padding = "max_length" if self.family != "clip" else True  # SigLIP was trained on max-length padding
        tokens = tokenizer(list(texts), padding=padding, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            if self.family == "clip":
                features = model(input_ids=tokens["input_ids"], attention_mask=tokens.get("attention_mask")).text_embeds
            else:
                features = _features(model.get_text_features(**tokens))
        return l2_normalize(features.float().numpy())


def _features(output):
    """transformers 5 returns a ModelOutput from get_*_features where 4.x returned the tensor."""
    return output if hasattr(output, "shape") else output.pooler_output
