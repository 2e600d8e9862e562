"""Compare two images the modern way (embedding cosine) beside the classic ways (MD5s, perceptual hashes).

Seeing the answers side by side explains why a re-saved, resized or one-pixel-changed copy is "different"
to a file or pixel hash, still close for a perceptual hash, and "the same" for an embedding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lookalike.images import open_query_image
from lookalike.models.base import Embedder
from lookalike.models.hashes import BITS, hash_bits
from lookalike.models.specs import thresholds_for


@dataclass(frozen=True)
class Comparison:
    model: str
    cosine: float
    file_md5_equal: bool | None  # None when an input was not a file
    pixel_md5_equal: bool
    phash_distance: int  # Hamming distance in bits out of 64
    dhash_distance: int
    sizes: tuple[tuple[int, int], tuple[int, int]]
    verification: dict | None = None  # with verify=True: local features' answer and where the copy sits
    near_duplicate_at: float = 1.0  # the model's `dupes` threshold (or the index's calibrated one)
    similar_at: float = 1.0  # the model's `recognize` threshold: the same subject, not a copy

    @property
    def verdict(self) -> str:
        """"near-duplicate", "similar" (same subject) or "different", by the model's verb thresholds."""
        if self.cosine >= self.near_duplicate_at:
            return "near-duplicate"
        return "similar" if self.cosine >= self.similar_at else "different"

    @property
    def percent(self) -> float:
        return (self.cosine + 1) * 50

    def as_dict(self) -> dict:
        return {
            "model": self.model, "cosine": round(self.cosine, 6), "percent": round(self.percent, 2),
            "file_md5_equal": self.file_md5_equal, "pixel_md5_equal": self.pixel_md5_equal,
            "phash_distance": self.phash_distance, "dhash_distance": self.dhash_distance, "hash_bits": BITS,
            "sizes": [list(s) for s in self.sizes], "verification": self.verification, "verdict": self.verdict,
            "bands": {"near_duplicate": round(self.near_duplicate_at, 6), "similar": round(self.similar_at, 6)},
        }


def file_md5(source) -> str | None:
    if isinstance(source, bytes):
        return hashlib.md5(source).hexdigest()
    if (isinstance(source, str) and not source.startswith(("http://", "https://"))) or hasattr(source, "__fspath__"):
        with open(source, "rb") as f:
            return hashlib.file_digest(f, "md5").hexdigest()
    return None


def pixel_md5(image: Image.Image) -> str:
    """MD5 of the decoded RGB pixels and the size: blind to metadata, sensitive to any pixel."""
    digest = hashlib.md5(f"{image.width}x{image.height}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def hash_distance(a: Image.Image, b: Image.Image, kind: str) -> int:
    return int(np.count_nonzero(hash_bits(a, kind) != hash_bits(b, kind)))


def compare_images(a, b, embedder: Embedder, verify: bool = False, near_duplicate_at: float | None = None
                   ) -> Comparison:
    """`near_duplicate_at`: an index's calibrated threshold; by default the model's (`lookalike.models.specs`)."""
    image_a, image_b = open_query_image(a), open_query_image(b)
    verification = None
    if verify:
        from lookalike.verify import verify_images

        verification = verify_images(image_a, image_b).as_dict()
    vectors = embedder.embed_images([image_a, image_b])
    md5_a, md5_b = file_md5(a), file_md5(b)
    defaults = thresholds_for(embedder.id)
    near = defaults.dupes if near_duplicate_at is None else near_duplicate_at
    return Comparison(
        model=embedder.id,
        cosine=float(np.clip(vectors[0] @ vectors[1], -1, 1)),
        file_md5_equal=None if md5_a is None or md5_b is None else md5_a == md5_b,
        pixel_md5_equal=pixel_md5(image_a) == pixel_md5(image_b),
        phash_distance=hash_distance(image_a, image_b, "phash"),
        dhash_distance=hash_distance(image_a, image_b, "dhash"),
        sizes=(image_a.size, image_b.size),
        verification=verification,
        near_duplicate_at=near,
        similar_at=min(defaults.examples, near),
    )
