"""Large-index mode: IVF-PQ sized to a memory budget, re-ranked from a memory-mapped float16 file on disk.

Chosen by `policy.structure_for` when the index's `memory_budget` setting cannot hold the default structure
(~1.1 KB per 512-d image). The number of inverted lists probed and the candidates re-ranked are tuned on the
collection (`tuning.py`).
"""

from __future__ import annotations

import numpy as np

from lookalike.settings import DEFAULT_SETTINGS, IndexSettings, SettingsError
from lookalike.store.base import exact_top_k
from lookalike.store.structures import FaissVectors
from lookalike.store.tuning import TUNING_QUERIES, tuned, tuning_set

TRAINING_SAMPLE = 200_000
NPROBE_LADDER = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
LARGE_CANDIDATE_LADDER = (50, 100, 200, 500, 1000)  # re-ranked from disk: each one is a 1 KB read


def large_index_layout(count: int, dim: int, budget: int) -> tuple[int, int]:
    """(nlist, PQ bytes per vector) that fit `budget` in RAM, autofaiss-style: the PQ codes take what the
    budget leaves after the coarse centroids; the float16 vectors for re-ranking stay on disk (memory-mapped)."""
    # √n lists, rounded up to a power of two (4,096 at 10M): on a few CPU cores the k-means training and the
    # assignment of every vector cost O(n·nlist), and the tuned nprobe recovers the recall
    nlist = int(min(65536, max(64, 2 ** np.ceil(np.log2(max(1.0, np.sqrt(count)))))))
    available = budget - nlist * dim * 4
    per_vector = available / max(count, 1)
    for m in (128, 96, 64, 48, 32, 24, 16, 8):
        if dim % m == 0 and m + 16 <= per_vector:  # + ids and list overhead
            return nlist, m
    needed = nlist * dim * 4 + count * 24
    raise SettingsError(f"a memory budget of {budget:,} bytes cannot hold {count:,} vectors even at 8 bytes each: "
                        f"give at least {needed / 2**20:,.0f} MiB (`lookalike index --memory-budget "
                        f"{max(1, int(np.ceil(needed / 2**20)))}M`)")


def build_large_index(vectors, dim: int, budget: int, chunk: int = 500_000):
    """IVF-PQ trained on a sample. `vectors` only needs len() and row slicing (a memory-mapped .npy does), and
    is read `chunk` rows at a time, so 10M vectors never need to be in RAM at once."""
    import faiss

    count = len(vectors)
    nlist, m = large_index_layout(count, dim, budget)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(vectors[:TRAINING_SAMPLE], dtype=np.float32))
    for start in range(0, count, chunk):
        index.add(np.ascontiguousarray(vectors[start:start + chunk], dtype=np.float32))
    return index


class IVFPQVectors(FaissVectors):
    kind = "ivfpq"
    approximate = True
    large = True

    def __init__(self, shard_ids: list[np.ndarray], shards: list, generation: int, epoch: int = 0,
                 trained_count: int = 0, rerank=None, candidates: int = LARGE_CANDIDATE_LADDER[1],
                 nprobe: int = 0) -> None:
        super().__init__(shard_ids, shards, generation, epoch, trained_count)
        self.rerank = rerank  # exact float16 vectors by position (memory-mapped when loaded)
        self.candidates = candidates
        self.nprobe = nprobe  # inverted lists probed, tuned on the collection (0: not yet)

    @property
    def tuning(self) -> dict[str, int]:
        return {"candidates": self.candidates, "nprobe": self.nprobe}

    @classmethod
    def build(cls, ids: np.ndarray, vectors, generation: int, epoch: int = 0,
              settings: IndexSettings = DEFAULT_SETTINGS) -> IVFPQVectors:
        """`vectors` may be a memory-mapped float16 file, which then serves the re-ranking."""
        if settings.memory_budget is None:
            raise SettingsError("large-index mode needs a memory budget (--memory-budget)")
        index = build_large_index(vectors, vectors.shape[1], settings.memory_budget)
        rerank = vectors if isinstance(vectors, np.memmap) else np.asarray(vectors, dtype=np.float16)
        built = cls([ids], [index], generation, epoch, trained_count=len(ids), rerank=rerank)
        # first the re-ranking pool with a generous probe, then the fewest lists that keep the recall
        generous = min(index.nlist, max(64, index.nlist // 8))
        tuning = tuning_set(vectors, TUNING_QUERIES // 4)  # each probe scans millions of codes at 10M
        built.candidates = tuned(tuning, list(LARGE_CANDIDATE_LADDER), lambda queries, k, candidates:
                                 built._search_ivf(queries, k, generous, candidates)[1])
        built.nprobe = tuned(tuning, [p for p in NPROBE_LADDER if p < generous] + [generous],
                             lambda queries, k, nprobe: built._search_ivf(queries, k, nprobe)[1])
        return built

    def _search(self, queries: np.ndarray, k: int, exact: bool, candidates: int | None):
        if exact:  # stream the memory-mapped vectors
            return (*exact_top_k(self.rerank, queries, k), "exact")
        return self._search_ivf(queries, k)

    def _search_ivf(self, queries: np.ndarray, k: int, nprobe: int | None = None, candidates: int | None = None):
        """IVF-PQ proposes candidates; their float16 vectors (read from disk) decide the order."""
        import faiss

        nprobe = nprobe or self.nprobe or min(self.index.nlist, max(64, self.index.nlist // 5))
        self.index.use_precomputed_table = -1  # its nlist×m×256 float table would break the memory budget
        pool = max(k, candidates or self.candidates)
        _, proposed = self.index.search(queries, pool, params=faiss.SearchParametersIVF(nprobe=nprobe))
        scores = np.full((len(queries), k), -np.inf, np.float32)
        positions = np.full((len(queries), k), -1, np.int64)
        for row, found in enumerate(proposed):
            found = np.unique(found[found >= 0])
            exact_scores = np.asarray(self.rerank[found], dtype=np.float32) @ queries[row]
            order = np.argsort(-exact_scores)[:k]
            scores[row, :len(order)], positions[row, :len(order)] = exact_scores[order], found[order]
        return scores, positions, f"ivfpq(nprobe={nprobe}, candidates={pool}, rerank=fp16)"
