"""The array side of `dupes`: candidate pairs from a k-nearest-neighbour search, and complete-linkage grouping.

Pure functions over vectors and positions (no index, no files), so they are tested and timed on their own.
"""

from __future__ import annotations

import numpy as np


def candidate_pairs(vectors, matrix: np.ndarray, ids: np.ndarray, k: int, floor: float, chunk: int = 4096,
                    candidates_per_result: int = 32) -> list[tuple[float, int, int]]:
    """(score, position_a, position_b) with a < b for every kNN pair scoring at least `floor`; `vectors` is
    any vector store (`search(queries, k, candidates=…)`) over the catalog ids `ids` (sorted)."""
    pairs: dict[tuple[int, int], float] = {}
    for start in range(0, len(ids), chunk):
        queries = matrix[start:start + chunk].astype(np.float32)
        found = vectors.search(queries, k + 1, candidates=candidates_per_result * (k + 1))
        positions = np.searchsorted(ids, found.ids)
        for row, (cols, scores) in enumerate(zip(positions, found.scores, strict=True)):
            a = start + row
            for b, score in zip(cols, scores, strict=True):
                if score < floor:
                    break
                if b != a and b < len(ids):
                    key = (min(a, b), max(a, b))
                    pairs[key] = max(pairs.get(key, -1.0), float(score))
    return sorted(((s, a, b) for (a, b), s in pairs.items()), reverse=True)


def neighbour_backgrounds(vectors, matrix: np.ndarray, ids: np.ndarray, rank: int, chunk: int = 4096
                          ) -> np.ndarray:
    """Per position: its similarity to its `rank`-th nearest other image (the copy score's background)."""
    found = np.zeros(len(ids), np.float32)
    for start in range(0, len(ids), chunk):
        result = vectors.search(matrix[start:start + chunk].astype(np.float32), rank + 1)
        positions = np.searchsorted(ids, result.ids)
        for row, (cols, scores) in enumerate(zip(positions, result.scores, strict=True)):
            others = [float(s) for b, s in zip(cols, scores, strict=True) if b != start + row and np.isfinite(s)]
            found[start + row] = others[rank - 1] if len(others) >= rank else (others[-1] if others else 0.0)
    return found


def copy_scores(cosines: np.ndarray, offsets_a: np.ndarray, offsets_b: np.ndarray, sure: float, floor: float
                ) -> np.ndarray:
    """Copy scores of pairs: cosine − both offsets; 1.0 at or above the `sure` cosine (a copy whatever its
    background), −1.0 below the `floor` cosine (two images that are merely each other's best look-alikes)."""
    return np.where(cosines >= sure, 1.0, np.where(cosines < floor, -1.0, cosines - offsets_a - offsets_b))


def copy_score_pairs(pairs: list[tuple[float, int, int]], offsets: np.ndarray, sure: float, floor: float
                     ) -> list[tuple[float, int, int]]:
    """(copy score, a, b) of (cosine, a, b) pairs, best first (`copy_scores`)."""
    if not pairs:
        return []
    cosines, a, b = (np.asarray(column) for column in zip(*pairs, strict=True))
    scored = copy_scores(cosines, offsets[a], offsets[b], sure, floor)
    return sorted(zip(scored.tolist(), a.tolist(), b.tolist(), strict=True), reverse=True)


class Groups:
    """Union of positions under a complete-linkage constraint checked on the stored vectors; with `offsets`
    (per position), on copy scores (`copy_scores`)."""

    def __init__(self, matrix: np.ndarray, pair_scores: dict[tuple[int, int], float] | None = None,
                 offsets: np.ndarray | None = None, sure: float = 1.0, floor: float = -1.0) -> None:
        self.matrix, self.offsets, self.sure, self.floor = matrix, offsets, sure, floor
        self.pair_scores = pair_scores or {}  # found through copy variants: may beat the own-vector cosine
        self.group_of: dict[int, list[int]] = {}

    def members(self, position: int) -> list[int]:
        return self.group_of.get(position, [position])

    def try_merge(self, a: int, b: int, min_score: float) -> bool:
        group_a, group_b = self.members(a), self.members(b)
        if group_a is group_b or a in group_b:
            return False
        cross = self.matrix[group_a].astype(np.float32) @ self.matrix[group_b].astype(np.float32).T
        if self.pair_scores:
            for i, x in enumerate(group_a):
                for j, y in enumerate(group_b):
                    cross[i, j] = max(cross[i, j], self.pair_scores.get((min(x, y), max(x, y)), -1.0))
        if self.offsets is not None:
            cross = copy_scores(cross, self.offsets[group_a][:, None], self.offsets[group_b][None, :], self.sure,
                                self.floor)
        if cross.min() < min_score:
            return False
        merged = group_a + group_b
        for position in merged:
            self.group_of[position] = merged
        return True

    def groups(self) -> list[list[int]]:
        unique = {id(group): group for group in self.group_of.values()}
        return [sorted(group) for group in unique.values()]
