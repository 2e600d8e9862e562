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


class Groups:
    """Union of positions under a complete-linkage constraint checked on the stored vectors."""

    def __init__(self, matrix: np.ndarray, pair_scores: dict[tuple[int, int], float] | None = None) -> None:
        self.matrix = matrix
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
        if cross.min() < min_score:
            return False
        merged = group_a + group_b
        for position in merged:
            self.group_of[position] = merged
        return True

    def groups(self) -> list[list[int]]:
        unique = {id(group): group for group in self.group_of.values()}
        return [sorted(group) for group in unique.values()]
