"""PDQ as a copy model: dihedral hashes in the documented order, and Hamming/cosine conversion."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike.copies import DIHEDRAL
from lookalike.models.pdq import DIHEDRAL_ORDER, cosine_from_hamming, dihedral_hashes, hamming_from_cosine
from lookalike.models.registry import COPY_THRESHOLDS, load_embedder

pytest.importorskip("pdqhash")


def test_dihedral_hashes_follow_the_documented_order(photos):
    embedder = load_embedder("pdq")
    image = photos["rocket"]  # not square: turns change the shape
    hashes = embedder.dihedral_vectors(image)
    assert hashes.shape == (8, 256)
    for position, name in enumerate(DIHEDRAL_ORDER[1:], 1):
        turned = embedder.embed_images([image.transpose(DIHEDRAL[name])])[0]
        bits = hamming_from_cosine(float(turned @ hashes[position]))
        others = [hamming_from_cosine(float(turned @ h)) for i, h in enumerate(hashes) if i != position]
        assert bits <= 32 < min(others), name


def test_dihedral_hashes_are_pdqhash_bits_from_one_dct(photos):
    import pdqhash

    for name in ("rocket", "coffee", "chelsea", "astronaut"):
        image = photos[name].copy()
        image.thumbnail((64, 64))
        pixels = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
        reference, _quality = pdqhash.compute_dihedral(pixels)
        expected = np.where(np.asarray(reference, dtype=bool), 1.0, -1.0) / 16
        assert np.array_equal(dihedral_hashes(pdqhash, pixels), expected.astype(np.float32)), name


def test_threshold_is_31_bits_and_resaves_match(photos):
    embedder = load_embedder("pdq")
    assert hamming_from_cosine(COPY_THRESHOLDS["pdq"]) == pytest.approx(31)
    assert cosine_from_hamming(0) == 1
    image = photos["coffee"]
    small = image.resize((image.width // 3, image.height // 3), Image.Resampling.BILINEAR)
    a, b, other = embedder.embed_images([image, small, photos["chelsea"]])
    assert float(a @ b) >= COPY_THRESHOLDS["pdq"] > float(a @ other)
    assert np.allclose(np.linalg.norm(a), 1)
