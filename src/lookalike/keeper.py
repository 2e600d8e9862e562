"""Which member of a duplicate group is the original, and why.

Largest resolution is not "the original": a bordered copy or a screenshot holding a photo has more pixels than
the photo. The original is the image the others are derived from, so the rules look at how members relate:

1. Geometry (the same ORB + RANSAC check as `--verify`) says who contains whom. When one image shows the other
   plus a margin, the margin decides: synthetic (flat colour: a border, a screenshot's window) means the bigger
   image is a framed copy; natural photo content means the smaller one is a crop.
2. Images with the same framing are aligned; where they differ, the one whose differing pixels are synthetic (flat
   fills: a caption box, an emoji) carries an overlay.
3. Among the members derived from no other, those of the largest family (members linked by derivations: a
   group joined through shared chrome, e.g. two screenshots of one app, holds another photo's copies too):
   highest resolution, then JPEG quality (estimated from the quantisation tables; lossless counts as 90), then
   file size, then the oldest file.

Every keeper gets a sentence saying why, and every other member what it is (a crop, a framed or overlaid copy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

WORK_SIDE = 384  # alignment and flatness maps are computed at this size: fast, and enough for margins and overlays
FLAT_STD = 2.5  # grey-level std in a 5x5 window below which pixels count as a flat fill
FLAT_MARGIN = 0.9  # a margin this flat and of one colour carries nothing: a border
PLAIN_STD = 4.0  # grey-level std of a whole margin below which it is one colour
SYNTHETIC_MARGIN = 0.3  # a margin partly flat (a window, a toolbar)...
EDGE_STEP = 2.0  # ...with an edge along the photo this much sharper than the photo itself: a frame
OVERLAY_EVIDENCE = 0.4  # summed log-ratio clues below this leave the pair undecided
CONTAINS = 0.85  # an image "shows the whole other" when it covers this share of it (fits are not exact)
MAX_ANALYSED = 10  # members compared pairwise (the best by metadata), so huge groups stay cheap
LOSSLESS_QUALITY = 90
KEEP_RULES = ("original", "resolution", "quality", "size", "oldest", "newest", "shortest-path")
DEFAULT_KEEP = ("original", "resolution", "quality", "size", "oldest")


@dataclass(frozen=True)
class Relation:
    derived: int  # position (in the analysed list) of the copy
    source: int  # position of the image it comes from
    what: str  # "cropped", "framed", "overlaid"


def jpeg_quality(path) -> int | None:
    """Estimated JPEG quality (1-100) from the luminance quantisation table; lossless formats give 90."""
    try:
        with Image.open(path) as image:
            if image.format != "JPEG":
                return LOSSLESS_QUALITY if image.format in ("PNG", "TIFF", "BMP", "WEBP") else None
            table = np.asarray(getattr(image, "quantization", {}).get(0, []), np.float64)  # JPEG's own tables
    except (OSError, ValueError, TypeError):
        return None
    if table.size != 64:
        return None
    scale = float(np.mean(table / np.asarray(_STANDARD_LUMA, np.float64)) * 100)
    quality = (200 - scale) / 2 if scale <= 100 else 5000 / scale
    return int(np.clip(round(quality), 1, 100))


def metadata_key(member, rules: Sequence[str]) -> tuple:
    """Sort key from file facts: the first member under it is the best copy."""
    parts = []
    for rule in rules:
        if rule == "original":
            continue
        parts.append({
            "resolution": -member.width * member.height,
            "quality": -(member.quality or 0),
            "size": -member.size,
            "oldest": member.mtime_ns,
            "newest": -member.mtime_ns,
            "shortest-path": len(member.relative_path),
        }[rule])
    return (*parts, member.relative_path)


def order_members(members: list, rules: Sequence[str], image_of: Callable | None = None,
                  verify_of: Callable | None = None) -> tuple[list, str]:
    """Members best first (the keeper first), with each copy's `note` set, and the reason for the keeper.

    `image_of(member)` decodes a member (None when unreadable); `verify_of(a, b)` is the geometric check of two
    members (a `Verification`, or None). Without them only the file facts decide."""
    ranked = sorted(members, key=lambda m: metadata_key(m, rules))
    relations: list[Relation] = []
    if "original" in rules and image_of is not None and verify_of is not None and len(ranked) > 1:
        relations = derivations(ranked[:MAX_ANALYSED], image_of, verify_of)
    derived = {r.derived for r in relations}
    analysed = ranked[:MAX_ANALYSED]
    family = _families(len(analysed), relations)
    # From the largest family of derivations: a group joined through shared chrome (two screenshots of one app)
    # also holds another photo's copies, whose biggest one is derived from nothing in the group.
    keeper_position = min((p for p in range(len(analysed)) if p not in derived),
                          key=lambda p: (-family.count(family[p]), p), default=0)
    keeper = analysed[keeper_position]
    for relation in sorted(relations, key=lambda r: analysed[r.source] is keeper):  # the keeper's say goes last
        copy, source = analysed[relation.derived], analysed[relation.source]
        copy.note = f"{relation.what} copy of {source.relative_path}"
    others = [m for m in ranked if m is not keeper]
    return [keeper, *others], _reason(keeper, others, relations, rules, analysed)


def _reason(keeper, others: list, relations: list[Relation], rules: Sequence[str], analysed: list) -> str:
    kinds = sorted({r.what for r in relations if analysed[r.source] is keeper})
    said = [f"the others include {' / '.join(kinds)} copies of it"] if kinds else []
    derived = {id(analysed[r.derived]) for r in relations}
    rivals = [m for m in others if id(m) not in derived]  # the members the file facts had to beat
    facts = {"resolution": "highest resolution", "quality": "best JPEG quality", "size": "largest file",
             "oldest": "oldest file", "newest": "newest file", "shortest-path": "shortest path"}
    for rule in (r for r in rules if r != "original"):
        if not rivals:
            break
        mine = metadata_key(keeper, [rule])[0]
        theirs = [metadata_key(other, [rule])[0] for other in rivals]
        if all(mine < value for value in theirs):
            said.append(f"{facts[rule]} of the rest" if kinds and rivals else facts[rule])
            break
        if not all(mine <= value for value in theirs):
            break
        rivals = [other for other, value in zip(rivals, theirs, strict=True) if value == mine]
    return "; ".join(said) or "first by " + ", ".join(r for r in rules if r != "original") + ", then path"


def derivations(members: list, image_of: Callable, verify_of: Callable) -> list[Relation]:
    """Which analysed member is a crop, framed copy or overlaid copy of which (each pair checked once)."""
    relations = []
    for i in range(len(members)):
        for j in range(i + 1, len(members)):
            check = verify_of(members[i], members[j])
            if check is None or not check.verified:
                continue
            relation = _relate(i, j, check, image_of(members[i]), image_of(members[j]))
            if relation is not None:
                relations.append(relation)
    sources = {r.derived: r.source for r in relations}
    # A cycle (a from b, b from a) says the evidence is contradictory: drop both claims.
    return [r for r in relations if sources.get(r.source) != r.derived]


def _families(count: int, relations: list[Relation]) -> list[int]:
    """Per analysed member, a label shared by every member linked to it by derivations (either way)."""
    label = list(range(count))
    for _ in range(count):  # enough passes to spread the smallest label along any chain
        for r in relations:
            label[r.derived] = label[r.source] = min(label[r.derived], label[r.source])
    return label


def _relate(i: int, j: int, check, image_i: Image.Image | None, image_j: Image.Image | None) -> Relation | None:
    if image_i is None or image_j is None:
        return None
    covered_i, covered_j = check.coverage()  # share of i that j shows, share of j that i shows
    forward = np.vstack([np.asarray(check.matrix), [0, 0, 1]])  # i's pixels → j's pixels
    if covered_j >= CONTAINS > covered_i:  # i shows all of j and more
        return _margin(i, j, image_i, image_j, forward)
    if covered_i >= CONTAINS > covered_j:
        return _margin(j, i, image_j, image_i, np.linalg.inv(forward))
    if covered_i >= CONTAINS and covered_j >= CONTAINS:
        return _overlay(i, j, image_i, image_j, forward)
    return None


def _margin(big: int, small: int, big_image: Image.Image, small_image: Image.Image,
            big_to_small: np.ndarray) -> Relation | None:
    """`big` shows `small` and more: a frame (flat margin, or a sharp edge around the photo: a border, a
    screenshot's window) or the scene a crop was cut from (content that continues across the crop's edge)."""
    gray, scale = _work(big_image)
    inside = _warp(np.ones(small_image.size[::-1], np.uint8), big_to_small, scale, gray.shape)
    margin = inside == 0
    if margin.mean() < 0.01:
        return None
    flat = _flat(gray)[margin].mean()
    to_grid = np.diag([scale, scale, 1]) @ np.linalg.inv(big_to_small)
    quad = (_corners(*small_image.size) @ to_grid[:2, :2].T) + to_grid[:2, 2]
    step = _edge_step(gray, quad)
    plain = flat >= FLAT_MARGIN and gray[margin].std() < PLAIN_STD  # one colour: a border, not a wall
    if plain or (flat >= SYNTHETIC_MARGIN and step >= EDGE_STEP):
        return Relation(big, small, "framed")
    return Relation(small, big, "cropped")


def _edge_step(gray: np.ndarray, quad: np.ndarray) -> float:
    """How much sharper the image is along the quadrilateral's edge than just inside it (1: no edge there)."""
    gradient = _gradient(gray)
    height, width = gray.shape
    centre = quad.mean(axis=0)
    on_edge, inside = [], []
    for start, end in zip(quad, np.roll(quad, -1, axis=0), strict=True):
        direction = (end - start) / max(np.linalg.norm(end - start), 1e-6)
        normal = np.array([direction[1], -direction[0]])
        if normal @ (start - centre) < 0:
            normal = -normal
        for t in np.linspace(0.05, 0.95, 40):
            point = start + t * (end - start)
            outside = np.round(point + 4 * normal).astype(int)
            if not (0 <= outside[0] < width and 0 <= outside[1] < height):
                continue  # this side lies on the big image's own edge: nothing beyond it
            edge, within = np.round(point).astype(int), np.round(point - 5 * normal).astype(int)
            if 0 <= within[0] < width and 0 <= within[1] < height and 0 <= edge[0] < width and 0 <= edge[1] < height:
                on_edge.append(gradient[edge[1], edge[0]])
                inside.append(gradient[within[1], within[0]])
    if len(on_edge) < 10:
        return 1.0
    return float((np.median(on_edge) + 1) / (np.median(inside) + 1))


def _overlay(i: int, j: int, image_i: Image.Image, image_j: Image.Image, i_to_j: np.ndarray) -> Relation | None:
    """Same framing: where the two differ, whose pixels look foreign to their surroundings (a caption box, an
    emoji) or have a sharp outline? The original's pixels there continue the picture around them."""
    import cv2

    colour_i, scale = _work(image_i, "RGB")
    colour_j = _warp(np.asarray(image_j.convert("RGB")), i_to_j, scale, colour_i.shape)
    gray_i, gray_j = (cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in (colour_i, colour_j))
    difference = cv2.GaussianBlur(np.abs(gray_i.astype(np.int16) - gray_j.astype(np.int16)).astype(np.uint8),
                                  (5, 5), 0)
    changed = cv2.morphologyEx((difference > 40).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    if not 0.003 <= changed.mean() <= 0.5:
        return None
    valid = cv2.erode((_warp(np.ones(image_j.size[::-1], np.uint8), i_to_j, scale, gray_i.shape) > 0).astype(
        np.uint8), np.ones((5, 5), np.uint8)) > 0
    region = (changed > 0) & valid
    ring = (cv2.dilate(changed, np.ones((15, 15), np.uint8)) > 0) & ~(changed > 0) & valid
    if region.sum() < 20 or ring.sum() < 20:
        return None
    kernel = np.ones((5, 5), np.uint8)
    outline = (cv2.dilate(changed, kernel) > 0) & ~(cv2.erode(changed, kernel) > 0) & valid
    gradient_i, gradient_j = _gradient(gray_i), _gradient(gray_j)
    # Three clues, each positive when j carries the overlay: its differing pixels are foreign to their
    # surroundings, outlined by a sharp edge, and flat fills. Each alone fails on some photo (measured on 32
    # caption/emoji copies of the sample photos: one or two misses each); their sum missed none.
    evidence = (
        np.log((_foreignness(colour_j, region, ring) + 0.1) / (_foreignness(colour_i, region, ring) + 0.1))
        + np.log((gradient_j[outline].mean() + 5) / (gradient_i[outline].mean() + 5))
        + 3 * (_flat(gray_j)[region].mean() - _flat(gray_i)[region].mean())
    )
    if abs(evidence) < OVERLAY_EVIDENCE:
        return None
    return Relation(j, i, "overlaid") if evidence > 0 else Relation(i, j, "overlaid")


def _foreignness(colour: np.ndarray, region: np.ndarray, ring: np.ndarray) -> float:
    """How unlike its surroundings a region is: difference of mean colour and of contrast, in ring std units."""
    inner, outer = colour[region].astype(np.float64), colour[ring].astype(np.float64)
    spread = outer.std(axis=0) + 5
    return float(np.mean(np.abs(inner.mean(axis=0) - outer.mean(axis=0)) / spread
                         + np.abs(inner.std(axis=0) - outer.std(axis=0)) / spread))


def _gradient(gray: np.ndarray) -> np.ndarray:
    import cv2

    smooth = cv2.GaussianBlur(gray.astype(np.float32), (3, 3), 0)
    return np.hypot(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))


def _corners(width: int, height: int) -> np.ndarray:
    return np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)


def _work(image: Image.Image, mode: str = "L") -> tuple[np.ndarray, float]:
    scale = min(1.0, WORK_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return np.asarray(image.convert(mode).resize(size, Image.Resampling.BILINEAR)), scale


def _warp(array: np.ndarray, dst_to_src: np.ndarray, scale: float, shape: tuple) -> np.ndarray:
    """`array` (in the source image's pixels) resampled onto the working grid of the destination image."""
    import cv2

    grid_to_src = dst_to_src @ np.diag([1 / scale, 1 / scale, 1])
    return cv2.warpAffine(np.ascontiguousarray(array), grid_to_src[:2], (shape[1], shape[0]),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _flat(gray: np.ndarray) -> np.ndarray:
    """Pixels whose 5x5 neighbourhood is a near-constant fill."""
    import cv2

    values = gray.astype(np.float32)
    mean, mean_sq = cv2.blur(values, (5, 5)), cv2.blur(values * values, (5, 5))
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0)) < FLAT_STD


# The JPEG standard's luminance table (quality 50), against which an encoder's table gives its quality.
_STANDARD_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]
