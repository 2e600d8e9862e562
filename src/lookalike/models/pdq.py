"""PDQ (Meta's 256-bit perceptual hash, via `pdqhash`) as an embedder: a fast copy model, dihedral by design.

Why PDQ next to pHash: its 256 bits come from a 16x16 DCT of a 64x64 luminance image after a tent filter, so it
survives re-encoding and resizes better, and `pdqhash.compute_dihedral` returns the hashes of all eight
rotations and flips from one DCT. The index stores the upright hash; the seven others are stored as copy
variants (see `lookalike.copies`), so a mirrored or turned copy is found at the cost of one hash.

A hash becomes a ±1/16 vector: cosine = 1 - 2 * hamming / 256, so a threshold in bits converts exactly.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from lookalike.errors import ModelUnavailableError
from lookalike.models.base import PreparedImageEmbedder

BITS = 256
# PDQ's reference downsamples to 512 before hashing; lookalike hashes a 64 px thumbnail (JPEGs decoded at 1/8
# scale, other formats box-filtered after decoding, then a bilinear resize with antialiasing). PDQ's own tent
# filter then has nothing left to alias, and hashing costs a twentieth. Measured on the benchmarks/vs_immaculate.py
# folder (392 edited copies; "found" = within 31 bits of their original in any of the 8 orientations): 512 px
# 0.587, 320 px 0.589, 256 px 0.538, 128 px 0.566, 64 px 0.594; no two different originals within 31 bits at any
# size. The price: a hash drifts 16 bits on average (p90 28) from PDQ of the full-resolution image (7 bits at 512
# and 320 px), so lookalike's hashes are for finding copies among themselves; compare with PDQ lists made by
# other tools at a looser distance.
PREPARE_SIZE = 64
# pdqhash.compute_dihedral's order (checked against hashes of transformed images in tests/test_models_pdq.py):
# the image, turned 90°, 180°, 270° counter-clockwise, flipped top-bottom, flipped left-right, transposed,
# transversed. The names are those of `lookalike.copies.DIHEDRAL`.
DIHEDRAL_ORDER = ("", "rot90", "rot180", "rot270", "vflip", "hflip", "transpose", "transverse")


def cosine_from_hamming(bits: float) -> float:
    return 1 - 2 * bits / BITS


def hamming_from_cosine(cosine: float) -> float:
    return (1 - cosine) * BITS / 2


def _pdqhash():
    try:
        import pdqhash
    except ImportError as exc:
        raise ModelUnavailableError("model pdq needs `pip install pdqhash` (or `pip install 'lookalike[copy]'`)") \
            from exc
    return pdqhash


class PdqEmbedder(PreparedImageEmbedder):
    id = "pdq"
    dim = BITS
    draft_size = PREPARE_SIZE

    def __init__(self) -> None:
        self._pdq = _pdqhash()

    def preprocessing(self) -> dict:
        return {"hash": "pdq", "bits": BITS, "downsample": PREPARE_SIZE}

    def prepare(self, image: Image.Image) -> np.ndarray:
        """All eight dihedral hashes as (8, 256) ±1/16 rows; the model step keeps the first (upright) one."""
        return self.dihedral_vectors(image)

    def embed_prepared(self, batch) -> np.ndarray:
        return np.asarray([np.asarray(item)[0] for item in batch], dtype=np.float32).reshape(len(batch), BITS)

    def prepared_variants(self, prepared: np.ndarray) -> dict:
        """The seven turned and flipped hashes, for the indexer to store beside the upright one."""
        return {"model": self.id, **dict(zip(DIHEDRAL_ORDER[1:], np.asarray(prepared)[1:], strict=True))}

    def dihedral_vectors(self, image: Image.Image) -> np.ndarray:
        image = image if image.mode == "RGB" else image.convert("RGB")
        if max(image.size) > PREPARE_SIZE:  # a new image: the caller's stays as it was
            scale = PREPARE_SIZE / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        hashes, _quality = self._pdq.compute_dihedral(np.ascontiguousarray(np.asarray(image, dtype=np.uint8)))
        return (np.where(np.asarray(hashes), 1.0, -1.0) / np.sqrt(BITS)).astype(np.float32)
