"""Geometric verification with local features (OpenCV ORB + RANSAC): proof that one image is a view of another.

Global embeddings summarise a whole picture, so a tight crop of a photo can stop looking like the photo. Local
features still match, and one consistent similarity transform (scale, rotation, translation, optionally a
mirror) between the matched points proves that one image shows the other. Used to rescue crops the embedding
misses (`dupes --verify`), to re-rank searches (`search --verify`), in `compare --verify`, and to tell which
member of a duplicate group contains which (the keeper rules).

A check that cannot be fooled (measured on gradients, flat images and unrelated photos, see tests):
- symmetric: the pair is put in a canonical order and RANSAC is seeded, so verify(a, b) mirrors verify(b, a);
- matches are mutual nearest neighbours passing the ratio test both ways;
- inliers are counted as *distinct* points in both images (a smooth gradient yields a handful of keypoints that
  match many times), their minimum scales with the keypoints available (small images have few);
- degenerate transforms are refused: scale beyond 1/16..16, inliers collapsed into a small patch, or frames that
  do not overlap (one image must lie mostly inside the other).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from lookalike.errors import LookalikeError

LOW_TEXTURE = 500  # fewer ORB keypoints than this at the default corner threshold: detect again, more finely
MAX_SIDE = 800  # features on a bounded-size copy: fast, and enough detail for copy detection
MIN_SIDE = 32  # ORB's pyramid cannot describe a strip thinner than its 31-px patch (1x1 crashed OpenCV's resize)
MIN_INLIERS = 40  # enough for any photo with its 1500 keypoints...
MIN_INLIERS_FLOOR = 12  # ...scaled down to 5 % of the keypoints of small images, never below this
INLIER_SHARE_OF_KEYPOINTS = 0.05
MIN_INLIER_RATIO = 0.3  # of the mutual matches
MAX_SCALE = 16.0  # a copy shown at 1/16 of its size (or 16x) is not a copy worth the name
MIN_SPREAD = 0.08  # inliers must span this fraction of each image's width and height
MIN_OVERLAP = 0.5  # the smaller frame must lie at least half inside the larger one


@dataclass
class Features:
    points: np.ndarray  # keypoint positions in the original image's pixels
    descriptors: np.ndarray | None
    size: tuple[int, int]  # (width, height) of the original image
    gray: np.ndarray = field(repr=False)  # the bounded-size grey copy (for the mirrored features)
    n_features: int = 1500
    _mirrored: Features | None = field(default=None, repr=False)

    def mirrored(self) -> Features:
        """Features of the left-right mirror image, in the mirror's own pixel coordinates."""
        if self._mirrored is None:
            self._mirrored = _extract(np.ascontiguousarray(self.gray[:, ::-1]), self.size, self.n_features)
        return self._mirrored

    @property
    def key(self) -> tuple:
        digest = hashlib.md5(self.descriptors.tobytes() if self.descriptors is not None else b"").hexdigest()
        return len(self.points), self.size, digest


@dataclass(frozen=True)
class Verification:
    matches: int  # mutual descriptor matches passing the ratio test
    inliers: int  # distinct points consistent with one similarity transform
    verified: bool
    reason: str = ""  # why it was not verified
    mirrored: bool = False
    matrix: tuple | None = None  # 2x3 affine from a's pixels to b's pixels (includes the mirror)
    sizes: tuple = ((0, 0), (0, 0))

    def region(self) -> dict | None:
        """Where the copy sits: the quadrilateral of the containing image (the one showing more of the scene; by
        pixels when both show the same) that the other one covers, in the container's pixel coordinates."""
        if not self.verified or self.matrix is None:
            return None
        (wa, ha), (wb, hb) = self.sizes
        forward = np.vstack([np.asarray(self.matrix, np.float64), [0, 0, 1]])
        covered_a, covered_b = self.coverage()
        if covered_b < covered_a - 0.02 or (abs(covered_a - covered_b) <= 0.02 and wb * hb >= wa * ha):
            image, corners, transform = "b", _corners(wa, ha), forward
        else:
            image, corners, transform = "a", _corners(wb, hb), np.linalg.inv(forward)
        quad = _apply(transform, corners)
        return {"in": image, "quad": [[round(float(x), 1), round(float(y), 1)] for x, y in quad]}

    def coverage(self) -> tuple[float, float]:
        """(share of a that b shows, share of b that a shows): 1.0 where one is a copy of the whole other."""
        (wa, ha), (wb, hb) = self.sizes
        matrix = np.asarray(self.matrix, np.float64)
        inside_b = _intersection(matrix, self.sizes[0], self.sizes[1])
        scale2 = abs(np.linalg.det(matrix[:, :2]))
        return min(1.0, inside_b / scale2 / (wa * ha)), min(1.0, inside_b / (wb * hb))

    def as_dict(self) -> dict:
        return {"verified": self.verified, "matches": self.matches, "inliers": self.inliers,
                "mirrored": self.mirrored, "reason": self.reason or None, "region": self.region()}


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise LookalikeError(
            "geometric verification needs OpenCV: `pip install 'lookalike[verify]'` (opencv-python-headless)"
        ) from exc
    return cv2


def available() -> bool:
    try:
        _cv2()
    except LookalikeError:
        return False
    return True


class FeatureCache:
    """ORB keypoints and descriptors per image key, computed once per run."""

    def __init__(self, n_features: int = 1500) -> None:
        self.n_features = n_features
        self._features: dict = {}
        self._lock = threading.Lock()

    def features(self, key, image: Image.Image) -> Features:
        with self._lock:
            if key in self._features:
                return self._features[key]
        found = extract_features(image, self.n_features)
        with self._lock:
            self._features[key] = found
        return found


def extract_features(image: Image.Image, n_features: int = 1500) -> Features:
    gray = image.convert("L")
    size = gray.size
    scale = min(1.0, MAX_SIDE / max(size))
    if scale < 1:
        gray = gray.resize((max(1, round(size[0] * scale)), max(1, round(size[1] * scale))),
                           Image.Resampling.BILINEAR)
    return _extract(np.asarray(gray), size, n_features)


def _extract(gray: np.ndarray, size: tuple[int, int], n_features: int) -> Features:
    if min(gray.shape[:2]) < MIN_SIDE:  # 1x1 pixels, 1xN strips: nothing to match, not an error
        return Features(np.zeros((0, 2), np.float32), None, size, gray, n_features)
    cv2 = _cv2()
    keypoints, descriptors = cv2.ORB_create(nfeatures=n_features).detectAndCompute(gray, None)
    if len(keypoints) < LOW_TEXTURE:  # soft, low-contrast pictures: a lower corner threshold finds enough
        keypoints, descriptors = cv2.ORB_create(nfeatures=n_features, fastThreshold=5).detectAndCompute(gray, None)
    scale = np.array([size[0] / gray.shape[1], size[1] / gray.shape[0]], np.float32)
    points = np.array([kp.pt for kp in keypoints], np.float32) * scale if keypoints else np.zeros((0, 2), np.float32)
    return Features(points, descriptors, size, gray, n_features)


def verify_features(a: Features, b: Features, mirror: bool = True) -> Verification:
    """Is one image a (cropped, scaled, rotated, bordered, optionally mirrored) view of the other?"""
    swapped = a.key > b.key  # canonical order: the answer cannot depend on argument order
    first, second = (b, a) if swapped else (a, b)
    result = _verify_direct(first, second)
    if not result.verified and mirror:
        flipped = _verify_direct(first.mirrored(), second)
        if flipped.verified:
            matrix = np.vstack([np.asarray(flipped.matrix), [0, 0, 1]]) @ _mirror_matrix(first.size[0])
            result = Verification(flipped.matches, flipped.inliers, True, "", True, _pack(matrix), flipped.sizes)
    if swapped and result.matrix is not None:
        inverse = np.linalg.inv(np.vstack([np.asarray(result.matrix), [0, 0, 1]]))
        result = Verification(result.matches, result.inliers, result.verified, result.reason, result.mirrored,
                              _pack(inverse), (a.size, b.size))
    elif swapped:
        result = Verification(result.matches, result.inliers, False, result.reason, False, None, (a.size, b.size))
    return result


def _verify_direct(a: Features, b: Features) -> Verification:
    cv2 = _cv2()
    sizes = (a.size, b.size)
    if a.descriptors is None or b.descriptors is None or len(a.descriptors) < 2 or len(b.descriptors) < 2:
        return Verification(0, 0, False, "too few keypoints", sizes=sizes)
    pairs = _mutual_matches(a.descriptors, b.descriptors)
    need = required_inliers(len(a.points), len(b.points))
    source, target = a.points[pairs[:, 0]], b.points[pairs[:, 1]]
    if _distinct(source, target) < need:
        return Verification(len(pairs), 0, False, "too few distinct matching keypoints", sizes=sizes)
    cv2.setRNGSeed(12345)
    threshold = max(3.0, 0.01 * max(b.size))
    matrix, mask = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC, ransacReprojThreshold=threshold,
                                               maxIters=4000, confidence=0.999)
    if matrix is None or mask is None:
        return Verification(len(pairs), 0, False, "no consistent transform", sizes=sizes)
    keep = mask.ravel().astype(bool)
    matrix, keep = _refine(source, target, matrix, keep, threshold)
    inliers = _distinct(source[keep], target[keep])
    reason = _degenerate(matrix, source[keep], target[keep], a.size, b.size)
    if not reason and inliers < need:
        reason = f"{inliers} distinct inliers, {need} needed"
    elif not reason and inliers < MIN_INLIER_RATIO * len(pairs):
        reason = f"only {inliers} of {len(pairs)} matches agree"
    return Verification(len(pairs), inliers, not reason, reason, False, _pack(matrix), sizes)


def _refine(source, target, matrix, keep, threshold: float):
    """A second, tighter fit on the inliers: places the copy's frame within a few pixels."""
    cv2 = _cv2()
    if keep.sum() < 6:
        return matrix, keep
    refined, mask = cv2.estimateAffinePartial2D(source[keep], target[keep], method=cv2.RANSAC,
                                                ransacReprojThreshold=max(1.5, threshold / 4), maxIters=2000)
    if refined is None or mask is None or mask.sum() < 0.6 * keep.sum():
        return matrix, keep
    residual = np.linalg.norm(source @ refined[:, :2].T + refined[:, 2] - target, axis=1)
    return refined, residual <= threshold


def required_inliers(keypoints_a: int, keypoints_b: int) -> int:
    """40 for photos; fewer for small images, whose few hundred keypoints cannot give 40 matches."""
    scaled = round(INLIER_SHARE_OF_KEYPOINTS * min(keypoints_a, keypoints_b))
    return int(np.clip(scaled, MIN_INLIERS_FLOOR, MIN_INLIERS))


def _mutual_matches(desc_a: np.ndarray, desc_b: np.ndarray) -> np.ndarray:
    """(i, j) pairs that are each other's best match and pass Lowe's ratio test in both directions."""
    cv2 = _cv2()
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)

    def best(queries, train) -> dict[int, int]:
        found = {}
        for candidates in matcher.knnMatch(queries, train, k=2):
            if candidates and (len(candidates) < 2 or candidates[0].distance < 0.8 * candidates[1].distance):
                found[candidates[0].queryIdx] = candidates[0].trainIdx
        return found

    forward, backward = best(desc_a, desc_b), best(desc_b, desc_a)
    pairs = [(i, j) for i, j in forward.items() if backward.get(j) == i]
    return np.array(pairs, np.int64).reshape(-1, 2)


def _distinct(source: np.ndarray, target: np.ndarray) -> int:
    """Matches at distinct positions in both images (2-pixel grid): repeated points prove nothing."""
    if not len(source):
        return 0
    return min(len(np.unique(np.round(source / 2), axis=0)), len(np.unique(np.round(target / 2), axis=0)))


def _degenerate(matrix: np.ndarray, source: np.ndarray, target: np.ndarray, size_a, size_b) -> str:
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if not 1 / MAX_SCALE <= scale <= MAX_SCALE:
        return f"degenerate transform (scale {scale:.3g})"
    for points, (width, height) in ((source, size_a), (target, size_b)):
        extent = points.max(axis=0) - points.min(axis=0)
        if extent[0] < MIN_SPREAD * width or extent[1] < MIN_SPREAD * height:
            return "matching points collapse into a small patch"
    if _overlap(matrix, size_a, size_b) < MIN_OVERLAP:
        return "the images' frames do not overlap"
    return ""


def _intersection(matrix: np.ndarray, size_a, size_b) -> float:
    """Area (in b's pixels) of b's frame that a's frame, mapped by `matrix`, covers."""
    cv2 = _cv2()
    quad = cv2.convexHull(_apply(np.vstack([matrix, [0, 0, 1]]), _corners(*size_a)).astype(np.float32))
    if cv2.contourArea(quad) < 1:
        return 0.0
    area, _ = cv2.intersectConvexConvex(quad, _corners(*size_b).astype(np.float32))
    return float(area)


def _overlap(matrix: np.ndarray, size_a, size_b) -> float:
    """Share of the smaller frame (a mapped into b, or b itself) that lies inside the other."""
    mapped_area = abs(np.linalg.det(matrix[:, :2])) * size_a[0] * size_a[1]
    smaller = min(mapped_area, size_b[0] * size_b[1])
    return _intersection(matrix, size_a, size_b) / smaller if smaller >= 1 else 0.0


def _corners(width: int, height: int) -> np.ndarray:
    return np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)


def _apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ transform[:2, :2].T + transform[:2, 2]


def _mirror_matrix(width: int) -> np.ndarray:
    return np.array([[-1, 0, width], [0, 1, 0], [0, 0, 1]], np.float64)


def _pack(matrix: np.ndarray) -> tuple:
    return tuple(tuple(float(v) for v in row) for row in np.asarray(matrix)[:2])


def verify_images(a: Image.Image, b: Image.Image, mirror: bool = True) -> Verification:
    return verify_features(extract_features(a), extract_features(b), mirror=mirror)
