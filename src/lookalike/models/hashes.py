"""Perceptual hashes (pHash, dHash) as embedders, so the same index, search and dupes verbs work with them.

A 64-bit hash becomes a ±1/8 vector: cosine = 1 - 2 * hamming / 64, so ranking by cosine is ranking by
Hamming distance and a threshold in bits converts exactly.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from lookalike.models.base import PreparedImageEmbedder

HASH_SIZE = 8
BITS = HASH_SIZE * HASH_SIZE


def hash_bits(image: Image.Image, kind: str) -> np.ndarray:
    import imagehash

    function = {"phash": imagehash.phash, "dhash": imagehash.dhash}[kind]
    return function(image, hash_size=HASH_SIZE).hash.reshape(-1)


def hamming_from_cosine(cosine: float) -> float:
    return (1 - cosine) * BITS / 2


class PerceptualHashEmbedder(PreparedImageEmbedder):
    dim = BITS
    draft_size = 256  # hashes look at a 32x32 thumbnail: decoding full resolution is wasted work
    holds_large_buffers = False  # a thumbnail per image (see PreparedImageEmbedder)
    prepare_in_processes = True

    def __init__(self, kind: str) -> None:
        if kind not in ("phash", "dhash"):
            raise ValueError(kind)
        self.kind = kind
        self.id = kind

    def preprocessing(self) -> dict:
        return {"hash": self.kind, "bits": BITS}

    def prepare(self, image: Image.Image) -> np.ndarray:
        return np.where(hash_bits(image, self.kind), 1.0, -1.0).astype(np.float32) / np.sqrt(BITS)

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(batch, dtype=np.float32).reshape(len(batch), BITS)
