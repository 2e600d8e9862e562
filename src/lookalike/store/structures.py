"""The embedded FAISS search structures, one class each; `policy.structure_for` chooses among them.

- `ExactVectors` (≤ `exact_limit` images): exhaustive inner product over float16 vectors
  (IndexScalarQuantizer QT_fp16, 1 KB per 512-d image).
- `PQRerankVectors` (larger): a two-stage exhaustive search (IndexRefine). 4-bit product-quantisation codes
  scanned with FAISS fast-scan SIMD kernels (dim/8 bytes per image) propose candidates; the float16 vectors
  re-rank them exactly. ~1.1 KB per 512-d image, builds in seconds (no graph), and keeps recall on data with no
  neighbourhood structure, where graphs collapse. `exact=True` searches the float16 vectors alone.
- `IVFPQVectors` (`large.py`, past a memory budget): IVF-PQ in RAM, float16 re-rank from a memory-mapped file.

From `shard_min_size` images per core up, a collection is split into shards (one per core, at most) that FAISS
searches in parallel threads (IndexShards) and merges: a query's scan and re-ranking are spread over the cores.
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np

from lookalike.settings import DEFAULT_SETTINGS, IndexSettings
from lookalike.store.base import Neighbours
from lookalike.store.tuning import tuned, tuning_set

PQ_TRAINING_SAMPLE = 65_536  # 16 centroids per sub-quantizer need few points
CANDIDATE_LADDER = (100, 200, 300, 500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 10_000, 20_000)
DEFAULT_CANDIDATES = 5000  # before tuning: enough for recall@10 ≈ 0.95 at 1M even on structureless data
MIN_CANDIDATES_PER_RESULT = 20


def search_threads() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def shard_count(count: int, shard_min_size: int) -> int:
    """One shard per core, each of at least `shard_min_size` images (one shard below that)."""
    return max(1, min(search_threads(), count // shard_min_size))


def combined(shards: list):
    """One FAISS index over the shards: itself if alone, else an IndexShards that searches them in parallel
    threads and merges their results (positions numbered shard after shard)."""
    if len(shards) == 1:
        return shards[0]
    import faiss

    together = faiss.IndexShards(shards[0].d, True, True)  # threaded, successive ids
    for shard in shards:
        together.add_shard(shard)
    return together


class FaissVectors:
    """A FAISS index over disjoint shards of the collection, with the catalog ids of its rows."""

    kind: ClassVar[str] = "exact"
    approximate: ClassVar[bool] = False
    large: ClassVar[bool] = False

    def __init__(self, shard_ids: list[np.ndarray], shards: list, generation: int, epoch: int = 0,
                 trained_count: int = 0) -> None:
        self.shard_ids = [np.asarray(ids, dtype=np.int64) for ids in shard_ids]  # catalog ids, in shard order
        self.use_shards(shards)
        self.ids = np.concatenate(self.shard_ids)  # by position in `index` (shard after shard)
        self.generation = generation
        self.epoch = epoch  # the catalog's epoch when built: a deletion since means rebuild
        self.trained_count = trained_count  # collection size when codebooks or lists were trained

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def tuning(self) -> dict[str, int]:
        """The tuned search parameters, persisted with the cache."""
        return {}

    def use_shards(self, shards: list) -> None:
        self.shards = shards
        self.index = combined(shards)

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, generation: int, epoch: int = 0,
              settings: IndexSettings = DEFAULT_SETTINGS) -> FaissVectors:
        import faiss

        trained = cls._new_shard(vectors)
        copies = shard_count(len(ids), settings.shard_min_size) - 1
        shards = [trained] + [faiss.clone_index(trained) for _ in range(copies)]
        built = cls([np.zeros(0, np.int64)] * len(shards), shards, generation, epoch, trained_count=len(ids))
        built.add(np.asarray(ids, dtype=np.int64), vectors)
        return built

    @staticmethod
    def _new_shard(vectors: np.ndarray):
        import faiss

        return faiss.IndexScalarQuantizer(vectors.shape[1], faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)

    def add(self, ids: np.ndarray, vectors: np.ndarray, chunk: int = 65536) -> None:
        """Appends rows, the larger parts to the smaller shards, so that the shards stay within one row of each
        other (a query waits for the largest)."""
        ids = np.asarray(ids, dtype=np.int64)
        smallest_first = np.argsort([len(part) for part in self.shard_ids], kind="stable")
        sizes = [len(ids) // len(self.shards) + (n < len(ids) % len(self.shards)) for n in range(len(self.shards))]
        starts = np.cumsum([0, *sizes])
        for shard_no, first, stop in zip(smallest_first, starts[:-1], starts[1:], strict=True):
            for start in range(first, stop, chunk):
                end = min(start + chunk, stop)
                self.shards[shard_no].add(np.ascontiguousarray(vectors[start:end], dtype=np.float32))
            self.shard_ids[shard_no] = np.concatenate([self.shard_ids[shard_no], ids[first:stop]])
        if len(self.shards) > 1:
            self.index.syncWithSubIndexes()
        self.ids = np.concatenate(self.shard_ids)

    def search(self, queries: np.ndarray, k: int, exact: bool = False, candidates: int | None = None
               ) -> Neighbours:
        """Top-k by inner product; `candidates` overrides how many candidates an approximate structure
        re-ranks (recall up, speed down)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self.ids))) if len(self.ids) else 0
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return Neighbours(empty.astype(np.int64), empty.astype(np.float32), "exact")
        scores, positions, method = self._search(queries, k, exact, candidates)
        ids = np.where(positions >= 0, self.ids[np.maximum(positions, 0)], -1)
        return Neighbours(ids, np.clip(scores, -1.0, 1.0), method)

    def _search(self, queries: np.ndarray, k: int, exact: bool, candidates: int | None):
        scores, positions = self.index.search(queries, k)
        return scores, positions, "exact"


class ExactVectors(FaissVectors):
    """Exhaustive float16 search."""


class PQRerankVectors(FaissVectors):
    """4-bit PQ fast-scan proposes, float16 re-ranks; the pool is tuned on the collection."""

    kind = "pq-rerank"
    approximate = True

    def __init__(self, shard_ids: list[np.ndarray], shards: list, generation: int, epoch: int = 0,
                 trained_count: int = 0, candidates: int = DEFAULT_CANDIDATES) -> None:
        super().__init__(shard_ids, shards, generation, epoch, trained_count)
        self.candidates = candidates  # PQ candidates each shard re-ranks for a top 10, tuned on the collection

    @property
    def tuning(self) -> dict[str, int]:
        return {"candidates": self.candidates}

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, generation: int, epoch: int = 0,
              settings: IndexSettings = DEFAULT_SETTINGS) -> PQRerankVectors:
        built = super().build(ids, vectors, generation, epoch, settings)
        assert isinstance(built, PQRerankVectors)
        built.candidates = built.tune_candidates(vectors)
        return built

    @staticmethod
    def _new_shard(vectors: np.ndarray):
        import faiss

        dim = vectors.shape[1]
        exact = FaissVectors._new_shard(vectors)
        sub_quantizers = next(dim // width for width in (4, 2, 1) if dim % width == 0)  # 64 bytes for 512-d
        index = faiss.IndexRefine(faiss.IndexPQFastScan(dim, sub_quantizers, 4, faiss.METRIC_INNER_PRODUCT), exact)
        sample = vectors
        if len(sample) > PQ_TRAINING_SAMPLE:
            sample = sample[np.random.default_rng(0).choice(len(sample), PQ_TRAINING_SAMPLE, replace=False)]
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        return index

    def tune_candidates(self, vectors: np.ndarray) -> int:
        """The smallest re-ranking pool that finds the target recall of the exact top 10."""
        import faiss

        def search(queries, k, candidates):
            return self.index.search(queries, k, params=faiss.IndexRefineSearchParameters(k_factor=candidates / k))[1]

        ladder = [c for c in CANDIDATE_LADDER if c < len(self.ids)] or [len(self.ids)]
        return tuned(tuning_set(vectors), ladder, search)

    def _search(self, queries: np.ndarray, k: int, exact: bool, candidates: int | None):
        import faiss

        if exact:
            flat = combined([faiss.downcast_index(shard.refine_index) for shard in self.shards])
            scores, positions = flat.search(queries, k)
            return scores, positions, "exact"
        candidates = candidates or max(MIN_CANDIDATES_PER_RESULT * k, self.candidates)
        params = faiss.IndexRefineSearchParameters(k_factor=max(1.0, candidates / k))
        scores, positions = self.index.search(queries, k, params=params)
        shards = f", shards={len(self.shards)}" if len(self.shards) > 1 else ""
        return scores, positions, f"pq-rerank(candidates={max(candidates, k)}{shards})"
