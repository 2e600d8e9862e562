"""Copy variants: the vectors of an image's flips, rotations and sub-regions, so edited copies still match.

Why: SSCD and hashes are not invariant to mirroring or to 90° turns, and a 15 % crop shares too little with the
whole picture for one global vector. A copy model can store, next to an image's vector, the vectors of
- dihedral variants (`hflip`, `rot90`, `rot180` by default: with every image searched against the others'
  variants, a copy turned 270° is the original turned 90°, so these three cover mirror images and all three
  turns; PDQ stores all seven, they are free), and
- regions: a grid of overlapping sub-images at one or two scales (`region:<scale>:<row>:<col>`), so a tight crop
  meets a region of its original that it resembles.
A copy lookup ranks images by the best score over all their stored vectors (and, for a query, over the query's
own dihedral variants). Costs are measured in docs/performance.md.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# name → PIL transform; 'rot90' is a quarter turn counter-clockwise, as np.rot90 and PDQ's dihedral order.
DIHEDRAL = {
    "hflip": Image.Transpose.FLIP_LEFT_RIGHT,
    "vflip": Image.Transpose.FLIP_TOP_BOTTOM,
    "rot90": Image.Transpose.ROTATE_90,
    "rot180": Image.Transpose.ROTATE_180,
    "rot270": Image.Transpose.ROTATE_270,
    "transpose": Image.Transpose.TRANSPOSE,
    "transverse": Image.Transpose.TRANSVERSE,
}
STORED_DIHEDRAL = ("hflip", "rot90", "rot180")
QUERY_DIHEDRAL = ("", "hflip", "rot90", "rot180", "rot270")
REGION_SCALES = (0.5,)  # a 3x3 grid of half-size windows (stride a quarter): 9 regions per image
EXTRAS = ("dihedral", "regions")


def region_boxes(width: int, height: int, scales: tuple[float, ...] = REGION_SCALES) -> dict[str, tuple]:
    """Overlapping windows of `scale` × each side, at stride half a window: (left, top, right, bottom) by name."""
    boxes = {}
    for scale in scales:
        steps = int(round(1 / scale)) * 2 - 1
        w, h = width * scale, height * scale
        for row in range(steps):
            for col in range(steps):
                left, top = col * w / 2, row * h / 2
                boxes[f"region:{scale:g}:{row}:{col}"] = (round(left), round(top), round(left + w), round(top + h))
    return boxes


def variant_images(image: Image.Image, kinds: tuple[str, ...]) -> dict[str, Image.Image]:
    """'' (the image itself), dihedral names and region names → the transformed image."""
    out = {}
    regions = region_boxes(*image.size) if any(k.startswith("region:") for k in kinds) else {}
    for kind in kinds:
        if kind == "":
            out[kind] = image
        elif kind in DIHEDRAL:
            out[kind] = image.transpose(DIHEDRAL[kind])
        else:
            out[kind] = image.crop(regions[kind])
    return out


def extra_kinds(model_id: str, extras: tuple[str, ...], scales: tuple[float, ...] = REGION_SCALES
                ) -> tuple[str, ...]:
    """The variant names an index with these `extras` stores for `model_id` (without '')."""
    kinds: list[str] = []
    if model_id == "pdq":  # dihedral by design: all seven come with the upright hash, for free
        kinds += ["rot90", "rot180", "rot270", "vflip", "hflip", "transpose", "transverse"]
    elif "dihedral" in extras:
        kinds += list(STORED_DIHEDRAL)
    if "regions" in extras:
        kinds += list(region_boxes(1000, 1000, scales))
    return tuple(kinds)


def variant_vectors(embedder, image: Image.Image, kinds: tuple[str, ...]) -> dict[str, np.ndarray]:
    """kind → L2-normalised vector of that variant of `image` under `embedder`."""
    if getattr(embedder, "id", "") == "pdq":
        from lookalike.models.pdq import DIHEDRAL_ORDER

        hashes = dict(zip(DIHEDRAL_ORDER, embedder.dihedral_vectors(image), strict=True))
        rest = tuple(k for k in kinds if k not in hashes)
        found = {k: hashes[k] for k in kinds if k in hashes}
        if rest:
            found.update(zip(rest, embedder.embed_images(list(variant_images(image, rest).values())), strict=True))
        return found
    images = variant_images(image, kinds)
    return dict(zip(images, embedder.embed_images(list(images.values())), strict=True))


def best_per_image(owner_ids: np.ndarray, scores: np.ndarray, ids: np.ndarray, k: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per query row: candidates (positions `ids` into `owner_ids`, with `scores`) collapsed to their image,
    keeping each image's best score; the top `k` images (id -1 / score -inf where fewer)."""
    out_ids = np.full((len(ids), k), -1, np.int64)
    out_scores = np.full((len(ids), k), -np.inf, np.float32)
    for row in range(len(ids)):
        valid = ids[row] >= 0
        owners, values = owner_ids[ids[row][valid]], scores[row][valid]
        order = np.argsort(-values, kind="stable")
        _, first = np.unique(owners[order], return_index=True)
        keep = order[np.sort(first)][:k]
        out_ids[row, :len(keep)] = owners[keep]
        out_scores[row, :len(keep)] = values[keep]
    return out_ids, out_scores
