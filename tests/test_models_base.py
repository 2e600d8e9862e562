import numpy as np
import pytest
from PIL import Image

from lookalike.errors import ModalityError
from lookalike.models.base import PreparedImageEmbedder, Preprocess, l2_normalize


def test_l2_normalize_gives_unit_rows_and_survives_zero():
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [0.6, 0.8], rtol=1e-6)
    assert np.all(np.isfinite(out[1]))


def test_preprocess_resizes_shortest_edge_crops_centre_and_normalises():
    image = Image.new("RGB", (400, 200), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 100, 200))  # left quarter blue: cropped away by the centre crop
    spec = Preprocess(shortest_edge=32, crop=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    array = spec(image)
    assert array.shape == (3, 32, 32) and array.dtype == np.float32
    np.testing.assert_allclose(array[:, 16, 16], [1.0, -1.0, -1.0], atol=0.02)
    assert spec.describe()["crop"] == (32, 32)


def test_image_only_embedder_refuses_text_with_a_remedy():
    class ImageOnly(PreparedImageEmbedder):
        id, dim = "image-only", 4

    with pytest.raises(ModalityError, match="--model clip"):
        ImageOnly().embed_texts(["a cat"])
    assert ImageOnly().embed_images([]).shape == (0, 4)


def test_preprocess_matches_resize_then_crop_on_a_real_photo():
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((500, 375))
    spec = Preprocess(shortest_edge=224, crop=(224, 224), mean=(0.48145466, 0.4578275, 0.40821073),
                      std=(0.26862954, 0.26130258, 0.27577711))
    resized = photo.resize((299, 224), Image.Resampling.BICUBIC)  # the reference: whole image, then the crop
    reference = np.asarray(resized.crop((37, 0, 261, 224)), np.float32).transpose(2, 0, 1) / 255
    reference = (reference - np.asarray(spec.mean, np.float32)[:, None, None]) / np.asarray(spec.std)[:, None, None]
    fast = spec(photo)
    assert fast.shape == (3, 224, 224) and fast.dtype == np.float32 and fast.flags.c_contiguous
    pixel_step = 1 / 255 / min(spec.std)
    assert np.abs(fast - reference).mean() < 1.5 * pixel_step  # resampling rounding, not a shift
    cosine = (fast * reference).sum() / np.linalg.norm(fast) / np.linalg.norm(reference)
    assert cosine > 0.999
