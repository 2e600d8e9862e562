import numpy as np
import pytest
from PIL import Image


@pytest.mark.slow
def test_vectors_are_unit_length_1280d(efficientnet, photos):
    vectors = efficientnet.embed_images([photos["chelsea"], photos["rocket"]])
    assert vectors.shape == (2, 1280) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_real_semantics_an_edited_copy_is_closer_than_any_other_photo(efficientnet, photos):
    names = list(photos)
    library = efficientnet.embed_images([photos[n] for n in names])
    cat = photos["chelsea"]
    edited = [
        cat.resize((cat.width // 3, cat.height // 3)),
        cat.crop((40, 30, cat.width - 40, cat.height - 30)),
        cat.convert("L").convert("RGB"),
        cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    ]
    for query in efficientnet.embed_images(edited):
        scores = library @ query
        assert names[int(np.argmax(scores))] == "chelsea"
        assert scores.max() > 0.8


@pytest.mark.slow
def test_batched_and_single_embeddings_agree(efficientnet, photos):
    batch = efficientnet.embed_images([photos["coffee"], photos["astronaut"]])
    single = efficientnet.embed_images([photos["astronaut"]])
    assert float(batch[1] @ single[0]) > 0.9999
