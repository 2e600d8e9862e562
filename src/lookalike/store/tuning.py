"""Recall tuning: the cheapest setting of an approximate structure that still finds the exact neighbours.

The collection's own images are the queries (FAISS AutoTune's idea, on a ladder of settings): clustered real
embeddings need a few hundred re-ranked candidates, data without neighbourhood structure thousands.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lookalike.store.base import exact_top_k

TARGET_RECALL = 0.95  # the share of the exact top 10 a tuned setting finds
TUNING_QUERIES = 256

TuningSet = tuple[np.ndarray, np.ndarray, np.ndarray]


def tuning_set(vectors, count: int = TUNING_QUERIES) -> TuningSet:
    """(positions, vectors, exact top 11) of `count` images of the collection used as queries."""
    picks = np.sort(np.random.default_rng(1).choice(len(vectors), min(count, len(vectors)), replace=False))
    queries = np.ascontiguousarray(vectors[picks], dtype=np.float32)
    return picks, queries, exact_top_k(vectors, queries, min(11, len(vectors)))[1]


def tuned(tuning: TuningSet, ladder: Sequence[int], search: Callable[[np.ndarray, int, int], np.ndarray]) -> int:
    """The first setting on `ladder` whose search(queries, k, setting) finds TARGET_RECALL of each query's
    exact top 10 (the query itself, found trivially, does not count), at the one-sided 95 % lower confidence
    bound of the mean, so that new queries reach the target too."""
    picks, queries, truth = tuning
    k = truth.shape[1]
    for setting in ladder:
        found = search(queries, k, setting)
        recalls = np.array([len((set(f) & set(t)) - {p}) / max(1, len(set(t) - {p}))
                            for f, t, p in zip(found.tolist(), truth.tolist(), picks.tolist(), strict=True)])
        if recalls.mean() - 1.645 * recalls.std() / np.sqrt(len(recalls)) >= TARGET_RECALL:
            return setting
    return ladder[-1]
