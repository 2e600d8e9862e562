"""The seam every vector store answers: derived from the catalog (the truth), searched by inner product.

Implementations: the embedded FAISS structures behind an on-disk cache (`faiss_store.FaissStore`: exact,
PQ re-rank with shards, IVF-PQ on disk) and a Milvus collection (`milvus.MilvusVectors`). `policy.open_store`
chooses one from the index's settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from lookalike.store.catalog import Catalog


@dataclass
class Neighbours:
    ids: np.ndarray  # (queries, k) catalog ids, -1 where fewer than k images exist
    scores: np.ndarray  # (queries, k) cosine similarities, best first
    method: str  # "exact", "pq-rerank(candidates=…)", "ivfpq(…)" or "milvus"


class VectorStore(Protocol):
    def sync(self, catalog: Catalog) -> None:
        """Bring the store up to the catalog's state (append, rebuild or upload what changed)."""

    def search(self, queries: np.ndarray, k: int, exact: bool = False, candidates: int | None = None
               ) -> Neighbours:
        """Top-k catalog ids by inner product; `candidates` widens an approximate search's pool."""

    def describe(self) -> str:
        """The structure in words, for `info`."""


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 262_144
                ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, positions) of each query's k best rows by inner product, best first, by BLAS over chunks
    (`vectors` may be a memory-mapped float16 file: only one chunk is in RAM at a time)."""
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(vectors), chunk):
        scores = np.concatenate([best_scores, queries @ np.asarray(vectors[start:start + chunk], np.float32).T], 1)
        positions = np.concatenate([best, np.arange(start, start + scores.shape[1] - best.shape[1])[None]
                                    .repeat(len(queries), 0)], 1)
        keep = np.argpartition(-scores, k - 1, axis=1)[:, :k] if scores.shape[1] > k else np.argsort(-scores, 1)
        best_scores, best = np.take_along_axis(scores, keep, 1), np.take_along_axis(positions, keep, 1)
    order = np.argsort(-best_scores, axis=1)
    return np.take_along_axis(best_scores, order, 1), np.take_along_axis(best, order, 1)
