"""Decoded images, local features and verifications for one `dupes` run, shared by rescues and keeper choice.

Each image is decoded once per group and each pair verified once (in either order), so the keeper rules reuse
what `--verify` already computed.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from lookalike.errors import ImageError


class RunImages:
    """Decoded images, local features and verifications of one run, by position in the vector matrix."""

    def __init__(self, index, ids: np.ndarray) -> None:
        self.index, self.ids = index, ids
        self.paths = index.catalog.paths_for(ids.tolist())
        self._decoded: dict[int, object] = {}
        self._checks: dict[tuple[int, int], object] = {}

    @cached_property
    def enabled(self) -> bool:
        """Whether local features can be used (OpenCV installed); asked only by runs that verify or analyse, so
        the others never import OpenCV (≈ 0.1 s and 20 MB)."""
        from lookalike.verify import available

        return available()

    @cached_property
    def cache(self):
        from lookalike.verify import FeatureCache

        return FeatureCache()

    def image(self, position: int):
        from lookalike.images import load_image

        if position not in self._decoded:
            try:
                self._decoded[position] = load_image(self.index.read(self.paths[int(self.ids[position])]))
            except ImageError:
                self._decoded[position] = None
        return self._decoded[position]

    def verify(self, a: int, b: int):
        """The geometric check of two positions (never raises; unreadable images do not verify)."""
        from lookalike.verify import Verification, verify_features

        key = (min(a, b), max(a, b))
        if key not in self._checks:
            images = [self.image(p) for p in key]
            if not self.enabled or any(image is None for image in images):
                self._checks[key] = Verification(0, 0, False, "not checked")
            else:
                features = [self.cache.features(int(self.ids[p]), image) for p, image in zip(key, images, strict=True)]
                self._checks[key] = verify_features(features[0], features[1])
        check = self._checks[key]
        return check if key == (a, b) else _swap(check)

    def forget(self) -> None:
        self._decoded.clear()  # groups are described one at a time: keep one group's pixels in memory


def _swap(check):
    """The same verification seen from the other image."""
    from dataclasses import replace

    if check.matrix is None:
        return replace(check, sizes=check.sizes[::-1])
    inverse = np.linalg.inv(np.vstack([np.asarray(check.matrix), [0, 0, 1]]))[:2]
    return replace(check, matrix=tuple(tuple(float(v) for v in row) for row in inverse), sizes=check.sizes[::-1])
