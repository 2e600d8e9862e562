"""CLIP's text tower on ONNX Runtime + `tokenizers` gives torch's vectors, and loads from the cache alone."""

import numpy as np
import pytest

from lookalike.models import text as onnx_text
from lookalike.models.hf import HuggingFaceEmbedder

TEXTS = ["a teddy bear", "a photo of a cat", "", "ünïcödé and emoji 🐈 text", "a cup of coffee " * 40,
         "rocket", "the moon at night", "grass", "bricks in a wall", "a man in a space suit"]


pytestmark = pytest.mark.slow  # each export runs the torch ONNX exporter (≈ 20 s on a busy 2-core machine)


def _embed(source, runtime, texts):
    embedder = HuggingFaceEmbedder(str(source), "hf:tiny-clip")
    embedder.requested_runtime = runtime
    return embedder.embed_texts(texts)


def test_onnx_text_vectors_match_torch(tiny_clip_dir, module_model_cache):
    """Padding (mixed lengths), truncation (a 160-word text), empty and non-ASCII texts, batch 1 and 10."""
    reference = _embed(tiny_clip_dir, "torch", TEXTS)
    batched = _embed(tiny_clip_dir, "auto", TEXTS)
    single = np.concatenate([_embed(tiny_clip_dir, "auto", [text]) for text in TEXTS[:4]])
    assert (reference * batched).sum(axis=1).min() >= 0.9999
    assert (reference[:4] * single).sum(axis=1).min() >= 0.9999


def test_tokenizer_from_the_cache_matches_transformers(tiny_clip_dir, module_model_cache):
    from transformers import AutoTokenizer

    embedder = HuggingFaceEmbedder(str(tiny_clip_dir), "hf:tiny-clip")
    embedder.requested_runtime = "onnx"
    embedder.embed_texts(["export"])
    assert onnx_text.is_exported(embedder.model_cache)
    encoder = onnx_text.OnnxTextEncoder(embedder.model_cache, export=lambda: pytest.fail("exported twice"))
    reference = AutoTokenizer.from_pretrained(tiny_clip_dir)(TEXTS, padding=True, truncation=True, max_length=77)
    ours = encoder.tokenizer.encode_batch(TEXTS)
    assert [e.ids for e in ours] == reference["input_ids"]
    assert [e.attention_mask for e in ours] == reference["attention_mask"]
    assert max(len(e.ids) for e in ours) == 77


def test_image_only_models_refuse_text_with_a_remedy(tiny_dino_dir, module_model_cache):
    from lookalike.errors import ModalityError

    with pytest.raises(ModalityError, match="--model clip"):
        HuggingFaceEmbedder(str(tiny_dino_dir), "hf:tiny-dino#cls", "cls").embed_texts(["a cat"])
