import numpy as np

from lookalike.models.hashes import BITS, PerceptualHashEmbedder, hamming_from_cosine


def test_hash_vectors_turn_cosine_into_hamming_distance(photos):
    embedder = PerceptualHashEmbedder("phash")
    cat, rocket = photos["chelsea"], photos["rocket"]
    small = cat.resize((cat.width // 2, cat.height // 2))
    vectors = embedder.embed_images([cat, small, rocket])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    assert hamming_from_cosine(float(vectors[0] @ vectors[1])) <= 4
    assert hamming_from_cosine(float(vectors[0] @ vectors[2])) >= 20
    distance = hamming_from_cosine(float(vectors[0] @ vectors[2]))
    assert abs(distance - round(distance)) < 1e-4 and distance <= BITS


def test_dhash_is_its_own_model(photos):
    embedder = PerceptualHashEmbedder("dhash")
    assert embedder.id == "dhash" and embedder.modalities == frozenset({"image"})
    assert embedder.embed_images([photos["coins"]]).shape == (1, BITS)
