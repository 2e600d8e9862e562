"""Exact duplicates inside a group: identical decoded pixels, and the oldest of such twins as keeper."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations

from lookalike.errors import ImageError

# Identical pixels give identical vectors (up to float rounding between batches); only pairs this close are decoded
# at full size to compare pixels. On the vs_immaculate folder with sscd-distilled: 12 decodes instead of 34 at
# 0.99, the same 34 exact copies found.
NEAR_IDENTICAL = 0.999


class PixelTwins:
    """Whether two images (by id) have the very same decoded pixels. Byte-identical files (same content hash) are
    twins without decoding; otherwise only same-size images whose vectors are near-identical (`similarity` ≥
    0.999) are decoded, once each, and their pixel MD5 is stored in the catalog (`store`) for the next run."""

    def __init__(self, index, details, similarity: Callable[[int, int], float]) -> None:
        self.index, self.details, self.similarity = index, details, similarity
        self.new_hashes: dict[int, str | None] = {}

    def same_pixels(self, a: int, b: int) -> bool:
        if not self._may_be_twins(a, b):
            return self.details[a].content_hash == self.details[b].content_hash
        return self._hash(a) is not None and self._hash(a) == self._hash(b)

    def prefetch(self, groups: Iterable[Iterable[int]], workers: int) -> None:
        """Decode, on `workers` threads, every image a group may have to compare by pixels: the decodes
        `same_pixels` would do one by one (and a few more: it compares members with their keeper only). With pdq
        on the benchmarks/vs_immaculate.py folder, 68 photos, half of `dupes`' time."""
        wanted = {image for group in groups for a, b in combinations(group, 2) if self._may_be_twins(a, b)
                  for image in (a, b) if self.details[image].pixel_hash is None and image not in self.new_hashes}
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(self._hash, wanted))  # each thread stores a different image's hash

    def _may_be_twins(self, a: int, b: int) -> bool:
        """Same size, other bytes, near-identical vectors: only pixels can tell."""
        first, second = self.details[a], self.details[b]
        return ((first.width, first.height) == (second.width, second.height)
                and first.content_hash != second.content_hash and self.similarity(a, b) >= NEAR_IDENTICAL)

    def _hash(self, image: int) -> str | None:
        stored = self.details[image].pixel_hash
        if stored is None and image not in self.new_hashes:
            self.new_hashes[image] = pixel_hash(self.index.read(self.details[image].path))
        return stored or self.new_hashes[image]

    def store(self) -> None:
        found = {i: h for i, h in self.new_hashes.items() if h}
        if found:
            self.index.catalog.set_pixel_hashes(found)


def oldest_twin(ordered: list, reason: str, twins: PixelTwins) -> tuple:
    """Among files with the keeper's very pixels (copies, metadata edits: their size says nothing about
    quality), keep the oldest, then the one with the shortest path."""
    keeper = ordered[0]
    same = [keeper, *(m for m in ordered[1:] if twins.same_pixels(m.id, keeper.id))]
    if len(same) == 1:
        return keeper, reason
    oldest = min(same, key=lambda m: (m.mtime_ns, m.relative_path.count("/"), len(m.relative_path),
                                      m.relative_path))
    if oldest is keeper:
        return keeper, f"{reason}; the oldest of {len(same)} files with identical pixels"
    derived = [part for part in reason.split("; ") if part.startswith("the others include")]
    return oldest, "; ".join([*derived, f"the oldest of {len(same)} files with identical pixels"])


def mark_exact(groups: list, twins: PixelTwins) -> None:
    """Identical decoded pixels = exact duplicate, whatever the metadata."""
    for group in groups:
        for member in group.others:
            member.exact = twins.same_pixels(member.id, group.keeper.id)
    twins.store()


def pixel_hash(source) -> str | None:
    """MD5 of the decoded pixels of a path or of encoded bytes (None when unreadable)."""
    from lookalike.compare import pixel_md5
    from lookalike.images import load_image

    try:
        return pixel_md5(load_image(source))
    except ImageError:
        return None
