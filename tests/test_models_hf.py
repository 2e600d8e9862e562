"""CLIP and DINOv2 through the real transformers loading path, on tiny random checkpoints built by conftest."""

import numpy as np
import pytest

from lookalike.errors import ModelUnavailableError
from lookalike.models.hf import HuggingFaceEmbedder


def test_clip_loads_from_a_local_dir_and_embeds_images_and_texts(tiny_clip_dir, photos):
    embedder = HuggingFaceEmbedder(str(tiny_clip_dir), "hf:tiny-clip")
    assert embedder.family == "clip" and embedder.dim == 24
    assert embedder.modalities == {"image", "text"}
    assert embedder.preprocessing()["crop"] == (64, 64)
    assert embedder._text is None  # text tower not loaded until a text is embedded
    images = embedder.embed_images([photos["chelsea"], photos["chelsea"], photos["rocket"]])
    assert embedder._text is None
    texts = embedder.embed_texts(["a teddy bear", "a photo of a cat", "a teddy bear"])
    assert images.shape == (3, 24) and texts.shape == (3, 24)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, rtol=1e-5)
    assert float(images[0] @ images[1]) > 0.9999 and float(images[0] @ images[2]) < 0.9999
    assert float(texts[0] @ texts[2]) > 0.9999 and float(texts[0] @ texts[1]) < 0.9999


def test_clip_towers_match_the_full_model(tiny_clip_dir, photos):
    """Loading the towers separately must give exactly what CLIPModel.get_*_features gives."""
    import torch
    from transformers import AutoTokenizer, CLIPModel

    embedder = HuggingFaceEmbedder(str(tiny_clip_dir), "hf:tiny-clip")
    full = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    pixels = torch.from_numpy(embedder.prepare(photos["coffee"])[None])
    tokens = AutoTokenizer.from_pretrained(tiny_clip_dir)(["a cup of coffee"], return_tensors="pt")
    with torch.no_grad():
        reference_image = full.get_image_features(pixel_values=pixels)
        reference_text = full.get_text_features(**tokens)
    reference_image = getattr(reference_image, "pooler_output", reference_image).numpy()[0]
    reference_text = getattr(reference_text, "pooler_output", reference_text).numpy()[0]
    ours_image = embedder.embed_images([photos["coffee"]])[0]
    ours_text = embedder.embed_texts(["a cup of coffee"])[0]
    assert float(ours_image @ reference_image / np.linalg.norm(reference_image)) > 0.9999
    assert float(ours_text @ reference_text / np.linalg.norm(reference_text)) > 0.9999


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_dinov2_is_image_only_with_either_pooling(tiny_dino_dir, photos, pooling):
    embedder = HuggingFaceEmbedder(str(tiny_dino_dir), f"hf:tiny-dino#{pooling}", pooling)
    assert embedder.family == "dinov2" and embedder.dim == 32 and embedder.modalities == {"image"}
    assert embedder.preprocessing()["shortest_edge"] == 72
    vectors = embedder.embed_images([photos["moon"], photos["grass"]])
    assert vectors.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_dinov2_cls_and_mean_differ(tiny_dino_dir, photos):
    cls = HuggingFaceEmbedder(str(tiny_dino_dir), "a", "cls").embed_images([photos["brick"]])
    mean = HuggingFaceEmbedder(str(tiny_dino_dir), "b", "mean").embed_images([photos["brick"]])
    assert float(cls[0] @ mean[0]) < 0.999


def test_offline_hub_id_fails_in_one_line_with_remedies():
    with pytest.raises(ModelUnavailableError) as caught:
        HuggingFaceEmbedder("openai/clip-vit-base-patch32-not-cached", "hf:x")
    message = str(caught.value)
    assert "\n" not in message
    assert "HF_HUB_OFFLINE" in message and "efficientnet-lite0" in message and "local checkpoint" in message
