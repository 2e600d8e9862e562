"""Hugging Face transformers checkpoints by hub id or local directory: CLIP and SigLIP (image + text), DINOv2.

The checkpoint's own `config.json` decides the family, so any CLIP/SigLIP/DINOv2 fine-tune loads the same way.
CLIP's towers load separately: an image-only run never pays for the text tower, and a text query never
pays for the vision tower. transformers (and torch) are imported only the first time a checkpoint is seen, to
describe it (`model.json` in the model cache) and export its towers, and when a torch runtime runs: every later
process on an ONNX runtime reads the cache (`lookalike.models.cache`, `lookalike.models.text`).
"""

from __future__ import annotations

import logging
import threading

import numpy as np
from PIL import Image

from lookalike.errors import ModelUnavailableError
from lookalike.models import text as onnx_text
from lookalike.models.base import Preprocess, TorchImageEmbedder, l2_normalize, triple
from lookalike.models.cache import ModelCache, checkpoint_folder, checkpoint_identity

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


def describe_checkpoint(source: str) -> dict:
    """What the ONNX path needs to know about a checkpoint, read with transformers: family, output size,
    preprocessing. Cached as `model.json`, so it is read this way once per checkpoint."""
    from transformers import AutoConfig

    _quiet_transformers()
    config = _from_pretrained(AutoConfig, source)
    family = config.model_type
    if family not in TEXT_FAMILIES + IMAGE_FAMILIES:
        raise ModelUnavailableError(
            f"model '{source}' is a '{family}' checkpoint; lookalike supports CLIP, SigLIP and DINOv2"
        )
    if family == "clip":
        dim = int(config.projection_dim)
    elif family in TEXT_FAMILIES:
        dim = int(config.vision_config.hidden_size)
    else:
        dim = int(config.hidden_size)
    return {"family": family, "dim": dim, "preprocess": _preprocess_from(source, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
                                                                          ).describe()}


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
        mean=triple(processor.image_mean or default_mean),
        std=triple(processor.image_std or default_std),
        resample=int(getattr(processor, "resample", Image.Resampling.BICUBIC) or Image.Resampling.BICUBIC),
    )


def _field(mapping, key: str):
    """Processor sizes are dicts in transformers 4 and SizeDict objects in 5."""
    if mapping is None:
        return None
    return mapping.get(key) if isinstance(mapping, dict) else getattr(mapping, key, None)


class HuggingFaceEmbedder(TorchImageEmbedder):
    """CLIP / SigLIP / DINOv2 through transformers. `pooling` applies to DINOv2: CLS token or mean of patches."""

    transformer = True

    def __init__(self, source: str, model_id: str, pooling: str | None = None) -> None:
        self.source = source
        self.id = model_id
        self.pooling = pooling or "cls"
        if self.pooling not in POOLINGS:
            raise ModelUnavailableError(f"unknown pooling '{pooling}'; choose one of {', '.join(POOLINGS)}")
        card = self._card()
        self.family = card["family"]
        self.dim = int(card["dim"])
        self.preprocess = Preprocess.from_dict(card["preprocess"])
        self.modalities = frozenset({"image", "text"} if self.family in TEXT_FAMILIES else {"image"})
        self._lock = threading.Lock()
        self._text_lock = threading.Lock()  # never held with `_lock`: exports take runtimes._lock, then `_lock`
        self._vision = None
        self._text = None
        self._tokenizer = None
        self._onnx_text: onnx_text.OnnxTextEncoder | None = None

    def _card(self) -> dict:
        """`model.json` from the model cache if this checkpoint was seen before, else described and cached."""
        folder = checkpoint_folder(self.source)
        if folder is not None:
            self.model_cache = ModelCache.for_checkpoint(self.id, folder)
            card = self.model_cache.read_json("model.json")
            if card is not None:
                return card
        card = describe_checkpoint(self.source)
        folder = checkpoint_folder(self.source)  # a hub download has just put the files on disk
        self.model_cache = ModelCache(self.id, checkpoint_identity(folder) if folder else "no local files")
        self.model_cache.write_json("model.json", card)
        return card

    def preprocessing(self) -> dict:
        return {**self.preprocess.describe(), "family": self.family, "pooling": self.pooling}

    # -- towers, loaded on first use ---------------------------------------------------------------
    def _vision_tower(self):
        with self._lock:
            if self._vision is None:
                import transformers

                _quiet_transformers()
                if self.family == "clip":
                    self._vision = self._clip_tower(transformers.CLIPVisionModelWithProjection, "vision_config")
                else:
                    self._vision = _from_pretrained(transformers.AutoModel, self.source).eval()
            return self._vision

    def _text_tower(self):
        with self._lock:
            if self._text is None:
                import transformers

                _quiet_transformers()
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

    # -- text ------------------------------------------------------------------------------------------
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        if "text" not in self.modalities:
            return super().embed_texts(texts)
        from lookalike.models import runtime as runtimes

        if runtimes.resolve(self.requested_runtime or runtimes.default_runtime(), transformer=True).startswith("onnx"):
            with self._text_lock:
                if self._onnx_text is None:
                    self._onnx_text = onnx_text.OnnxTextEncoder(self.model_cache, self._export_text)
            return l2_normalize(self._onnx_text(list(texts)))
        return self._torch_texts(texts)

    def _torch_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        model, tokenizer = self._text_tower()
        tokens = tokenizer(list(texts), padding=self._text_padding(), truncation=True,
                           max_length=self._text_length(model, tokenizer), return_tensors="pt")
        with torch.inference_mode():
            features = self._text_features(model, *(tokens[name] for name in self._text_inputs(tokenizer)))
        return l2_normalize(features.float().numpy())

    def _text_features(self, model, input_ids, attention_mask=None):
        if self.family == "clip":
            return model(input_ids=input_ids, attention_mask=attention_mask).text_embeds
        tokens = {"input_ids": input_ids} | ({} if attention_mask is None else {"attention_mask": attention_mask})
        return _features(model.get_text_features(**tokens))

    def _text_padding(self) -> str:
        return "max_length" if self.family != "clip" else "longest"  # SigLIP was trained on max-length padding

    @staticmethod
    def _text_inputs(tokenizer) -> list[str]:
        return [name for name in ("input_ids", "attention_mask") if name in tokenizer.model_input_names]

    @staticmethod
    def _text_length(model, tokenizer) -> int:
        """The tokenizer's limit, capped by the position table (a bare tokenizer may declare no limit)."""
        positions = getattr(model.config, "text_config", model.config).max_position_embeddings
        return int(min(tokenizer.model_max_length, positions))

    def _export_text(self) -> None:
        """text.onnx, tokenizer.json and text.json: what `OnnxTextEncoder` needs, written once per model."""
        from lookalike.models.export import BATCH, export_graph

        model, tokenizer = self._text_tower()
        if getattr(tokenizer, "backend_tokenizer", None) is None:
            raise ModelUnavailableError(
                f"model '{self.source}' has no fast (tokenizers) tokenizer, so its text tower cannot run on ONNX: "
                "use --runtime torch"
            )
        inputs, padding = self._text_inputs(tokenizer), self._text_padding()
        length = self._text_length(model, tokenizer)
        examples = tokenizer(["a photo", "a photo of two cats asleep on a sofa"], padding=padding, truncation=True,
                             max_length=length, return_tensors="pt")
        sequence = {1: ("sequence", 2, length)} if padding == "longest" else {}
        export_graph(lambda *tokens: self._text_features(model, *tokens), model,
                     self.model_cache.path(onnx_text.GRAPH), {name: examples[name] for name in inputs},
                     {name: {0: BATCH, **sequence} for name in inputs})
        onnx_text.save_tokenizer(self.model_cache, tokenizer, inputs, length, padding)


def _features(output):
    """transformers 5 returns a ModelOutput from get_*_features where 4.x returned the tensor."""
    return output if hasattr(output, "shape") else output.pooler_output
