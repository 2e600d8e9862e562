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


def _dihedral_coefficients() -> tuple[np.ndarray, np.ndarray]:
    """Where each of the 8 dihedral hashes takes its 256 DCT coefficients from, and their signs.

    Turning or flipping an image permutes and negates its 16x16 DCT coefficients (PDQ's basis starts at frequency
    1, so mirroring along an axis negates the even frequencies of that axis); a transpose swaps the two axes.
    This is what PDQ's reference does in `pdqDihedralHash256esFromFloatLuma`. Indexes and signs are for
    `pdqhash.compute_float`'s layout (row-major, reversed), which is also the bit order of its hashes."""
    rows, cols = np.indices((16, 16))
    even_row, even_col, odd_sum = rows % 2 == 0, cols % 2 == 0, (rows + cols) % 2 == 1
    no_sign = np.zeros((16, 16), bool)
    # (negated where, then transposed), for each name of DIHEDRAL_ORDER
    moves = ((no_sign, False), (even_col, True), (odd_sum, False), (even_row, True),
             (even_row, False), (even_col, False), (no_sign, True), (odd_sum, True))
    natural = np.arange(256).reshape(16, 16)
    sources, signs = [], []
    for negated, transposed in moves:
        source, sign = natural, np.where(negated, -1.0, 1.0)
        if transposed:
            source, sign = source.T, sign.T
        sources.append(255 - source.ravel()[::-1])  # compute_float's reversed layout, in and out
        signs.append(sign.ravel()[::-1])
    return np.stack(sources), np.stack(signs).astype(np.float32)


DIHEDRAL_SOURCES, DIHEDRAL_SIGNS = _dihedral_coefficients()


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
    holds_large_buffers = False  # a thumbnail per image (see PreparedImageEmbedder)
    prepare_in_processes = True

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
        return dihedral_hashes(self._pdq, np.ascontiguousarray(np.asarray(image, dtype=np.uint8)))


def dihedral_hashes(pdq, pixels: np.ndarray) -> np.ndarray:
    """PDQ's eight dihedral hashes as (8, 256) ±1/16 rows, from one DCT of `pixels` (RGB, uint8).

    The same bits as `pdqhash.compute_dihedral` (all 8 hashes equal on 529 of 530 images of the
    benchmarks/vs_immaculate.py folder; the other differs by 2 bits in 4 of them, coefficients tied at the
    median), at a third of the cost: compute_dihedral unpacks its 2,048 bits one by one in Python, holding the
    GIL for 0.39 ms per image, which kept the decoding threads waiting. Here PDQ's C++ computes the DCT
    (`compute_float`, 0.12 ms) and numpy permutes, negates and thresholds it at each hash's median (0.01 ms)."""
    coefficients, _quality = pdq.compute_float(pixels)
    turned = np.asarray(coefficients, dtype=np.float32)[DIHEDRAL_SOURCES] * DIHEDRAL_SIGNS
    median = np.partition(turned, BITS // 2 - 1, axis=1)[:, BITS // 2 - 1:BITS // 2]  # PDQ's (torben) lower median
    return np.where(turned > median, 1.0, -1.0).astype(np.float32) / np.float32(np.sqrt(BITS))
