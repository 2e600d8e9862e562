"""Geometric verification with local features (OpenCV ORB + RANSAC).

Global embeddings summarise a whole picture, so a tight crop of a photo can stop looking like the photo. Local
features still match, and a consistent geometric transform (scale, rotation, translation) between the matched
points proves that one image is a view of the other. Used to confirm near-duplicate candidates, to rescue crops
the embedding misses, and to re-rank image searches (`--verify`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lookalike.errors import LookalikeError

MAX_SIDE = 800  # features on a bounded-size copy: fast, and enough detail for copy detection
MIN_INLIERS = 40
MIN_INLIER_RATIO = 0.4
MIN_SIDE = 32  # ORB's pyramid cannot describe a strip thinner than its 31-px patch (1x1 crashed OpenCV's resize)


@dataclass(frozen=True)
class Verification:
    matches: int  # descriptor matches passing the ratio test
    inliers: int  # matches consistent with one similarity transform
    verified: bool


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise LookalikeError(
            "geometric verification needs OpenCV: `pip install 'lookalike[verify]'` (opencv-python-headless)"
        ) from exc
    return cv2


class FeatureCache:
    """ORB keypoints and descriptors per image key, computed once per run."""

    def __init__(self, n_features: int = 1500) -> None:
        self.n_features = n_features
        self._features: dict = {}
        self._lock = threading.Lock()

    def features(self, key, image: Image.Image):
        with self._lock:
            if key in self._features:
                return self._features[key]
        found = extract_features(image, self.n_features)
        with self._lock:
            self._features[key] = found
        return found


def extract_features(image: Image.Image, n_features: int = 1500):
    cv2 = _cv2()
    gray = image.convert("L")
    scale = min(1.0, MAX_SIDE / max(gray.size))
    if scale < 1:
        gray = gray.resize((max(1, round(gray.width * scale)), max(1, round(gray.height * scale))),
                           Image.Resampling.BILINEAR)
    if min(gray.size) < MIN_SIDE:  # 1x1 pixels, 1xN strips: nothing to match, not an error
        return np.zeros((0, 2), np.float32), None
    orb = cv2.ORB_create(nfeatures=n_features)
    keypoints, descriptors = orb.detectAndCompute(np.asarray(gray), None)
    points = np.float32([kp.pt for kp in keypoints]) / scale if keypoints else np.zeros((0, 2), np.float32)
    return points, descriptors


def verify_features(a, b) -> Verification:
    cv2 = _cv2()
    (points_a, desc_a), (points_b, desc_b) = a, b
    if desc_a is None or desc_b is None or len(desc_a) < 2 or len(desc_b) < 2:
        return Verification(0, 0, False)
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(desc_a, desc_b, k=2)
    good = [m for m, *rest in (p for p in pairs if p) if not rest or m.distance < 0.8 * rest[0].distance]
    if len(good) < 6:
        return Verification(len(good), 0, False)
    source = np.float32([points_a[m.queryIdx] for m in good])
    target = np.float32([points_b[m.trainIdx] for m in good])
    _, mask = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC, ransacReprojThreshold=8.0)
    inliers = int(mask.sum()) if mask is not None else 0
    verified = inliers >= MIN_INLIERS and inliers >= MIN_INLIER_RATIO * len(good)
    return Verification(len(good), inliers, verified)


def verify_images(a: Image.Image, b: Image.Image) -> Verification:
    return verify_features(extract_features(a), extract_features(b))
