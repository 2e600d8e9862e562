"""Copy variants: the vectors of an image's flips, rotations and sub-regions, so edited copies still match.

Why: SSCD and hashes are not invariant to mirroring or to 90° turns, and a 15 % crop shares too little with the
whole picture for one global vector. A copy model can store, next to an image's vector, the vectors of
- dihedral variants (`hflip`, `rot90`, `rot180` by default: with every image searched against the others'
  variants, a copy turned 270° is the original turned 90°, so these three cover mirror images and all three
  turns; PDQ stores all seven, they are free), and
- regions: a grid of overlapping sub-images at one or two scales (`region:<scale>:<row>:<col>`), so a tight crop
  meets a region of its original that it resembles, and
- `trim`: the picture with its flat frame cut off (a border, a screenshot's window and margins), only when it
  has one: SSCD sees a bordered copy as mostly frame, and flat frames look alike, so a white-framed screenshot
  otherwise matches white-backed clip-art before its own original.
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
QUERY_KINDS = (*QUERY_DIHEDRAL, "trim")  # a copy lookup's query variants ('trim' only where there is a frame)
FLAT = 6.0  # a frame row or column: pixel spread (std of 0-255 values) below this
MIN_TRIM = 0.03  # a frame is worth a variant when it takes at least this share of a side
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


def frame_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) inside the image's flat frame, or None when there is no frame worth cutting.
    A frame is peeled from each edge in turn: flat rows (or columns) of the outermost one's colour, so a title
    bar goes, then the window's margins, and a flat picture inside a frame of another colour stays."""
    small = image.convert("RGB")
    small.thumbnail((256, 256))
    pixels = np.asarray(small, np.float32)
    box = [0, 0, pixels.shape[1], pixels.shape[0]]  # left, top, right, bottom
    changed = True
    while changed and box[2] - box[0] > 8 and box[3] - box[1] > 8:
        inside = pixels[box[1]:box[3], box[0]:box[2]]
        rows, columns = inside, inside.transpose(1, 0, 2)
        cuts = [_flat_run(columns), _flat_run(rows), _flat_run(columns[::-1]), _flat_run(rows[::-1])]
        box = [box[0] + cuts[0], box[1] + cuts[1], box[2] - cuts[2], box[3] - cuts[3]]
        changed = any(cuts)
    height, width = pixels.shape[:2]
    area = (box[2] - box[0]) * (box[3] - box[1])
    if min(box[2] - box[0], box[3] - box[1]) <= 8 or area > (1 - MIN_TRIM) * height * width:
        return None
    scale = image.width / width
    return (round(box[0] * scale), round(box[1] * scale), round(box[2] * scale), round(box[3] * scale))


def _flat_run(lines: np.ndarray) -> int:
    """How many leading lines (rows of pixels) are flat and of the first line's colour, when the line after them
    stands out from that colour (a frame's edge; a flat sky fading into a picture is no frame)."""
    colours = lines.mean(axis=1)
    flat = (lines.std(axis=1).max(axis=1) < FLAT) & (np.abs(colours - colours[0]).max(axis=1) < 2 * FLAT)
    run = int(np.argmin(flat)) if not flat.all() else len(flat)
    edge = colours[min(run + 1, len(lines) - 1)]
    return run if run < len(lines) - 1 and np.abs(edge - colours[0]).max() >= 2 * FLAT else 0


def variant_images(image: Image.Image, kinds: tuple[str, ...]) -> dict[str, Image.Image]:
    """'' (the image itself), dihedral names, region names and 'trim' → the transformed image ('trim' is left
    out when the image has no frame)."""
    out = {}
    regions = region_boxes(*image.size) if any(k.startswith("region:") for k in kinds) else {}
    for kind in kinds:
        if kind == "":
            out[kind] = image
        elif kind == "trim":
            if (box := frame_box(image)) is not None:
                out[kind] = image.crop(box)
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
            images = variant_images(image, rest)
            found.update(zip(images, embedder.embed_images(list(images.values())), strict=True))
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


def sign_bits(matrix: np.ndarray) -> np.ndarray | None:
    """The packed signs of vectors whose every value is ±1/√dim (float16 storage rounds it), else None."""
    magnitude = 1 / np.sqrt(matrix.shape[1])
    for start in range(0, len(matrix), 65_536):  # chunks: a float matrix fails on its first rows, cheaply
        chunk = np.abs(np.asarray(matrix[start:start + 65_536], np.float32))
        if not np.allclose(chunk, magnitude, rtol=1e-3, atol=0):
            return None
    return np.packbits(np.asarray(matrix) > 0, axis=1)


def float_search_bits(codes: np.ndarray, dim: int, queries: np.ndarray, wanted: int) -> tuple[np.ndarray, np.ndarray]:
    """Inner products of float queries with stored bit vectors (rare: queries that are not hashes)."""
    stored = (np.unpackbits(codes, axis=1)[:, :dim].astype(np.float32) * 2 - 1) / np.sqrt(dim)
    scores = queries @ stored.T
    positions = np.argsort(-scores, axis=1)[:, :wanted]
    return np.take_along_axis(scores, positions, axis=1), positions
