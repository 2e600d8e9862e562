"""The search structure: a FAISS index over the catalog's vectors, cached on disk and kept up to date.

- Small collections (≤ `EXACT_LIMIT` images): exact inner-product search over float16 vectors
  (IndexScalarQuantizer QT_fp16, 1 KB per 512-d image).
- Larger ones: a two-stage exhaustive search (IndexRefine). 4-bit product-quantisation codes scanned with
  FAISS fast-scan SIMD kernels (dim/8 bytes per image) propose candidates; the float16 vectors re-rank them
  exactly. ~1.1 KB per 512-d image, builds in seconds (no graph), and keeps recall on data with no
  neighbourhood structure, where graphs collapse. `exact=True` searches the float16 vectors alone.
- From `SHARD_MIN_SIZE` images per core up, the collection is split into shards (one per core, at most) that
  FAISS searches in parallel threads (IndexShards) and merges: a query's scan and re-ranking are spread over the
  cores, each shard re-ranking its own candidates.
- Additions are appended to the cached structure (to the smallest shards) while the collection at most doubles
  since the codebooks were trained; a deletion (rare) or more growth rebuilds it. The catalog stays the truth: a
  missing, stale or corrupt cache is rebuilt from it.
- On disk, the state file (vectors.json) is the commit point: it names the shard and id files of one build, which
  are written under fresh names first, so a crash or a concurrent reader never mixes two builds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.store.catalog import Catalog

EXACT_LIMIT = int(os.environ.get("LOOKALIKE_EXACT_LIMIT", 50_000))
BYTES_PER_DIM = 2.15  # default structure: float16 vectors, 4-bit PQ codes and ids (~1,100 bytes per 512-d image)
TRAINING_SAMPLE = 200_000
PQ_TRAINING_SAMPLE = 65_536  # 16 centroids per sub-quantizer need few points
TARGET_RECALL = 0.95  # re-ranking pools are tuned on each collection to find this share of the exact top 10
CANDIDATE_LADDER = (100, 200, 300, 500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 10_000, 20_000)
DEFAULT_CANDIDATES = 5000  # before tuning: enough for recall@10 ≈ 0.95 at 1M even on structureless data
MIN_CANDIDATES_PER_RESULT = 20
# below this many images per shard the thread hand-off (~0.2 ms) costs more than the parallel scan saves
# (100k in 2 shards: 0.55 ms vs 0.34 ms in one; 1M in 2 shards: 4.1 ms vs 5.1–6.1 ms in one)
SHARD_MIN_SIZE = int(os.environ.get("LOOKALIKE_SHARD_MIN_SIZE", 250_000))
TUNING_QUERIES = 256
NPROBE_LADDER = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
LARGE_CANDIDATE_LADDER = (50, 100, 200, 500, 1000)  # re-ranked from disk: each one is a 1 KB read


def memory_budget() -> int | None:
    """LOOKALIKE_MEMORY_BUDGET (bytes, or with a G/M suffix): past it, large-index mode (IVF-PQ) is used."""
    value = os.environ.get("LOOKALIKE_MEMORY_BUDGET", "").strip().upper()
    if not value:
        return None
    scale = {"G": 2**30, "M": 2**20, "K": 2**10}.get(value[-1], 1)
    return int(float(value.rstrip("GMK")) * scale)


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
    raise ValueError(f"a memory budget of {budget:,} bytes cannot hold {count:,} vectors even at 8 bytes each")


def build_large_index(vectors, dim: int, budget: int, chunk: int = 500_000):
    """IVF-PQ trained on a sample. `vectors` only needs len() and row slicing (a memory-mapped .npy does), and
    is read `chunk` rows at a time, so 10M vectors never need to be in RAM at once. Candidates are re-ranked
    with the exact float16 vectors, which stay on disk (the memory-mapped .npy next to the index)."""
    import faiss

    count = len(vectors)
    nlist, m = large_index_layout(count, dim, budget)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(vectors[:TRAINING_SAMPLE], dtype=np.float32))
    for start in range(0, count, chunk):
        index.add(np.ascontiguousarray(vectors[start:start + chunk], dtype=np.float32))
    return index


def needs_large_index(count: int, dim: int, exact_limit: int | None = None) -> bool:
    """True when a memory budget is set and the default structure would not fit it."""
    budget = memory_budget()
    limit = EXACT_LIMIT if exact_limit is None else exact_limit
    return budget is not None and count > limit and count * dim * BYTES_PER_DIM > budget


def search_threads() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def shard_count(count: int) -> int:
    """One shard per core, each of at least SHARD_MIN_SIZE images (one shard below that)."""
    return max(1, min(search_threads(), count // SHARD_MIN_SIZE))


def _combined(shards: list):
    """One FAISS index over the shards: itself if alone, else an IndexShards that searches them in parallel
    threads and merges their results (positions numbered shard after shard)."""
    if len(shards) == 1:
        return shards[0]
    import faiss

    combined = faiss.IndexShards(shards[0].d, True, True)  # threaded, successive ids
    for shard in shards:
        combined.add_shard(shard)
    return combined


@dataclass
class Neighbours:
    ids: np.ndarray  # (queries, k) catalog ids, -1 where fewer than k images exist
    scores: np.ndarray  # (queries, k) cosine similarities, best first
    method: str  # "exact", "pq-rerank(candidates=…)" or "ivfpq(…)"


def _pq_subquantizers(dim: int) -> int:
    """4 dimensions per 4-bit sub-quantizer (64 bytes for 512-d); fewer if dim is not a multiple of 4."""
    return next(dim // width for width in (4, 2, 1) if dim % width == 0)


def _new_faiss_index(dim: int, approximate: bool, training: np.ndarray | None = None):
    import faiss

    exact = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    if not approximate:
        return exact
    codes = faiss.IndexPQFastScan(dim, _pq_subquantizers(dim), 4, faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexRefine(codes, exact)
    sample = training
    if len(sample) > PQ_TRAINING_SAMPLE:
        sample = sample[np.random.default_rng(0).choice(len(sample), PQ_TRAINING_SAMPLE, replace=False)]
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


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


class VectorIndex:
    def __init__(self, shard_ids: list[np.ndarray], shards: list, generation: int, epoch: int = 0, rerank=None,
                 trained_count: int = 0, candidates: int = DEFAULT_CANDIDATES, nprobe: int = 0) -> None:
        self.shard_ids = [np.asarray(ids, dtype=np.int64) for ids in shard_ids]  # catalog ids, in shard order
        self.use_shards(shards)
        self.ids = np.concatenate(self.shard_ids)  # by position in `index` (shard after shard)
        self.generation = generation
        self.epoch = epoch
        self.rerank = rerank  # large-index mode: exact float16 vectors by position (memory-mapped when loaded)
        self.trained_count = trained_count  # collection size when the PQ codebooks were trained
        self.candidates = candidates  # PQ candidates each shard re-ranks for a top 10, tuned on the collection
        self.nprobe = nprobe  # large-index mode: inverted lists probed, tuned on the collection (0: not yet)

    def __len__(self) -> int:
        return len(self.ids)

    def use_shards(self, shards: list) -> None:
        """FAISS indexes over disjoint parts of the collection, and `index`, which searches them in parallel."""
        self.shards = shards
        self.index = _combined(shards)

    @property
    def approximate(self) -> bool:
        return hasattr(self.shards[0], "refine_index") or self.large

    @property
    def large(self) -> bool:
        return self.rerank is not None

    @property
    def kind(self) -> str:
        return "ivfpq" if self.large else "pq-rerank" if self.approximate else "exact"

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, generation: int, epoch: int = 0,
              exact_limit: int | None = None) -> VectorIndex:
        import faiss

        limit = EXACT_LIMIT if exact_limit is None else exact_limit
        dim = vectors.shape[1]
        if needs_large_index(len(ids), dim, limit):
            return cls.build_large(ids, vectors, generation, epoch)
        approximate = len(ids) > limit
        trained = _new_faiss_index(dim, approximate, training=vectors)
        shards = [trained] + [faiss.clone_index(trained) for _ in range(shard_count(len(ids)) - 1)]
        built = cls([np.zeros(0, np.int64)] * len(shards), shards, generation, epoch, trained_count=len(ids))
        built.add(np.asarray(ids, dtype=np.int64), vectors)
        if built.approximate:
            built.candidates = built.tune_candidates(vectors)
        return built

    @classmethod
    def build_large(cls, ids: np.ndarray, vectors, generation: int, epoch: int = 0) -> VectorIndex:
        """Large-index mode; `vectors` may be a memory-mapped float16 file, which then serves the re-ranking."""
        index = build_large_index(vectors, vectors.shape[1], memory_budget())
        rerank = vectors if isinstance(vectors, np.memmap) else np.asarray(vectors, dtype=np.float16)
        built = cls([ids], [index], generation, epoch, rerank=rerank, trained_count=len(ids))
        # first the re-ranking pool with a generous probe, then the fewest lists that keep the recall
        generous = min(index.nlist, max(64, index.nlist // 8))
        tuning = built._tuning_set(vectors, TUNING_QUERIES // 4)  # each probe scans millions of codes at 10M
        built.candidates = built._tuned(tuning, list(LARGE_CANDIDATE_LADDER), lambda queries, k, candidates:
                                        built._search_large(queries, k, False, generous, candidates)[1])
        built.nprobe = built._tuned(tuning, [p for p in NPROBE_LADDER if p < generous] + [generous],
                                    lambda queries, k, nprobe: built._search_large(queries, k, False, nprobe)[1])
        return built

    def tune_candidates(self, vectors: np.ndarray) -> int:
        """The smallest re-ranking pool that finds TARGET_RECALL of the exact top 10 when images of this
        collection are the queries: clustered real embeddings need a few hundred candidates, data without
        neighbourhood structure thousands. (FAISS AutoTune's idea, on a ladder of pool sizes.)"""
        import faiss

        def search(queries, k, candidates):
            return self.index.search(queries, k, params=faiss.IndexRefineSearchParameters(k_factor=candidates / k))[1]

        ladder = [c for c in CANDIDATE_LADDER if c < len(self.ids)] or [len(self.ids)]
        return self._tuned(self._tuning_set(vectors, TUNING_QUERIES), ladder, search)

    @staticmethod
    def _tuning_set(vectors, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions, vectors, exact top 11) of `count` images of the collection used as queries."""
        picks = np.sort(np.random.default_rng(1).choice(len(vectors), min(count, len(vectors)), replace=False))
        queries = np.ascontiguousarray(vectors[picks], dtype=np.float32)
        return picks, queries, exact_top_k(vectors, queries, min(11, len(vectors)))[1]

    @staticmethod
    def _tuned(tuning, ladder: list[int], search) -> int:
        """The first setting on `ladder` whose search(queries, k, setting) finds TARGET_RECALL of each query's
        exact top 10 (the query itself, found trivially, does not count)."""
        picks, queries, truth = tuning
        k = truth.shape[1]
        for setting in ladder:
            found = search(queries, k, setting)
            recalls = np.array([len((set(f) & set(t)) - {p}) / max(1, len(set(t) - {p}))
                                for f, t, p in zip(found.tolist(), truth.tolist(), picks.tolist(), strict=True)])
            # the one-sided 95 % lower confidence bound, so that new queries reach the target too
            if recalls.mean() - 1.645 * recalls.std() / np.sqrt(len(recalls)) >= TARGET_RECALL:
                return setting
        return ladder[-1]

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
        """Top-k by inner product; `candidates` overrides how many PQ candidates the default structure re-ranks
        (recall up, speed down; large-index mode keeps its tuned pool)."""
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self.ids))) if len(self.ids) else 0
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return Neighbours(empty.astype(np.int64), empty.astype(np.float32), "exact")
        if self.large:
            scores, positions, method = self._search_large(queries, k, exact)
        elif self.approximate and not exact:
            candidates = candidates or max(MIN_CANDIDATES_PER_RESULT * k, self.candidates)
            params = faiss.IndexRefineSearchParameters(k_factor=max(1.0, candidates / k))
            scores, positions = self.index.search(queries, k, params=params)
            shards = f", shards={len(self.shards)}" if len(self.shards) > 1 else ""
            method = f"pq-rerank(candidates={max(candidates, k)}{shards})"
        else:
            flat = (_combined([faiss.downcast_index(shard.refine_index) for shard in self.shards])
                    if self.approximate else self.index)
            scores, positions = flat.search(queries, k)
            method = "exact"
        ids = np.where(positions >= 0, self.ids[np.maximum(positions, 0)], -1)
        return Neighbours(ids, np.clip(scores, -1.0, 1.0), method)

    def _search_large(self, queries: np.ndarray, k: int, exact: bool, nprobe: int | None = None,
                      candidates: int | None = None):
        """IVF-PQ proposes candidates; their float16 vectors (read from disk) decide the order."""
        import faiss

        if exact:  # stream the memory-mapped vectors
            return (*exact_top_k(self.rerank, queries, k), "exact")
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


def append_rows(path: Path, keep: int, rows: np.ndarray):
    """Appends `rows` to the 2-d .npy at `path` after its first `keep` rows (dropping any a crashed append left),
    rewriting the header's shape in place; returns the file memory-mapped again."""
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(f)
        data_start = f.tell()
        if fortran_order or dtype != rows.dtype or shape[1:] != rows.shape[1:]:
            raise ValueError(f"{path} does not hold rows like these")
        f.truncate(data_start + keep * int(np.prod(shape[1:])) * dtype.itemsize)
        f.seek(0, os.SEEK_END)
        f.write(np.ascontiguousarray(rows).tobytes())
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                  "shape": (keep + len(rows), *shape[1:])}
        text = repr(header).encode("latin1")
        prefix = 6 + 2 + (2 if version == (1, 0) else 4)  # magic, version, header length
        room = data_start - prefix - 1  # the header text is space-padded and ends with a newline
        if len(text) > room:
            raise ValueError(f"no room to grow the header of {path}")
        f.seek(prefix)
        f.write(text.ljust(room) + b"\n")
    return np.load(path, mmap_mode="r")


def _appendable(cached: VectorIndex | None, count: int, epoch: int, large: bool) -> bool:
    """The cache can take the catalog's additions: same kind, nothing deleted or replaced since (epoch), and at
    most twice the collection its codebooks or lists were trained on."""
    return (cached is not None and cached.large == large and cached.epoch == epoch and len(cached.ids) <= count
            and (not cached.approximate or count <= 2 * cached.trained_count))


LEGACY_INDEX_FILE, LEGACY_IDS_FILE = "vectors.faiss", "vectors.ids.npy"  # one file each, before shards
BUILD_FILE = re.compile(r"vectors\.[0-9a-f]{12}\.(\d+\.faiss|ids\.npy)")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class VectorCache:
    """Keeps the FAISS index in `directory`, tagged with the catalog generation it reflects."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.state_file = self.directory / "vectors.json"
        self.rerank_file = self.directory / "vectors.f16.npy"

    def load(self, catalog: Catalog, dim: int) -> VectorIndex:
        generation = catalog.generation()
        cached = self._read()
        if cached is not None and cached.generation == generation:
            return cached
        count = catalog.count()
        if needs_large_index(count, dim):
            if _appendable(cached, count, catalog.epoch(), large=True):
                self._append_large(cached, catalog, dim)  # only additions since: no 10-minute rebuild at 10M
                built = cached
            else:
                built = self._build_large_from(catalog, dim)
            self._write(built)
            return built
        ids, vectors, (generation, epoch) = catalog.all_vectors(dim)
        if _appendable(cached, len(ids), epoch, large=False) and cached.approximate == (len(ids) > EXACT_LIMIT):
            new = ~np.isin(ids, cached.ids)  # append the new vectors
            cached.add(ids[new], vectors[new])
            cached.generation = generation
            self._write(cached)
            return cached
        built = VectorIndex.build(ids, vectors, generation, epoch)
        self._write(built)
        return built

    def describe(self) -> str:
        """The cached search structure in words, without loading it ('' before the first search)."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return ""
        count, kind = state.get("count", 0), state.get("kind")
        if kind == "ivfpq":
            return (f"IVF-PQ + on-disk float16 re-rank (large-index mode; nprobe {state.get('nprobe')}, "
                    f"{state.get('candidates')} candidates, tuned), {count:,} vectors")
        if kind == "pq-rerank":
            shards = len(self.index_files(state))
            pool = (f"{state['candidates']:,} candidates, tuned" if shards == 1 else
                    f"{state['candidates']:,} candidates per shard, tuned; {shards} shards searched in parallel")
            return f"PQ fast-scan + float16 re-rank ({pool}), {count:,} vectors"
        return f"exact float16, {count:,} vectors" if kind == "exact" else ""

    def _build_large_from(self, catalog: Catalog, dim: int) -> VectorIndex:
        """Streams the catalog's vectors into the memory-mapped float16 file the index re-ranks from, then
        builds from that file: RAM holds one chunk at a time, never the collection."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f"{self.rerank_file.name}.tmp*"):  # from a build that crashed
            owner = stale.name.rsplit(".tmp", 1)[-1]
            if owner.isdigit() and not _process_alive(int(owner)):
                stale.unlink(missing_ok=True)
        staging = Path(f"{self.rerank_file}.tmp{os.getpid()}")
        ids, (generation, epoch) = catalog.export_vectors(staging, dim)
        return VectorIndex.build_large(ids, np.load(staging, mmap_mode="r"), generation, epoch)

    def _append_large(self, cached: VectorIndex, catalog: Catalog, dim: int) -> None:
        """Adds the catalog's rows newer than the cache to the IVF-PQ lists and to the end of the float16 file,
        whose .npy header is rewritten in place (numpy leaves room for a growing shape)."""
        import faiss

        ids, vectors, (generation, _) = catalog.vectors_after(int(cached.ids.max()) if len(cached.ids) else 0, dim)
        if len(ids):
            writable = faiss.read_index(str(self.index_files()[0]))  # not the read-only memory map
            cached.use_shards([writable])
            cached.rerank = append_rows(self.rerank_file, len(cached.ids), np.asarray(vectors, np.float16))
            cached.add(ids, vectors)
        cached.generation = generation

    def index_files(self, state: dict | None = None) -> list[Path]:
        """The FAISS files (one per shard) of the committed cache, or of `state`; [] before the first."""
        if state is None:
            try:
                state = json.loads(self.state_file.read_text())
            except (OSError, ValueError):
                return []
        return [self.directory / name for name in state.get("shard_files", [LEGACY_INDEX_FILE])]

    def _read(self) -> VectorIndex | None:
        import faiss

        def read_index(path: Path):
            try:
                return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            except RuntimeError:  # index types that cannot be memory-mapped
                return faiss.read_index(str(path))

        try:
            state = json.loads(self.state_file.read_text())
            shards = [read_index(path) for path in self.index_files(state)]
            ids = np.load(self.directory / state.get("ids_file", LEGACY_IDS_FILE))
            rerank = np.load(self.rerank_file, mmap_mode="r") if state.get("large") else None
        except (OSError, ValueError, KeyError, RuntimeError):
            return None
        if rerank is not None:
            if len(rerank) < len(ids):
                return None
            rerank = rerank[:len(ids)]  # rows past the count: an append that crashed before its state was written
        sizes = state.get("shard_sizes", [len(ids)])
        if ([shard.ntotal for shard in shards] != sizes or sum(sizes) != len(ids) or state.get("count") != len(ids)
                or any(hasattr(shard, "hnsw") for shard in shards)):
            return None  # (an HNSW graph is what earlier versions built: rebuild)
        return VectorIndex(np.split(ids, np.cumsum(sizes)[:-1]), shards, state["generation"], state.get("epoch", 0),
                           rerank, state.get("trained_count", 0),
                           state.get("candidates", LARGE_CANDIDATE_LADDER[1] if rerank is not None
                                     else DEFAULT_CANDIDATES), state.get("nprobe", 0))

    def _write(self, vectors: VectorIndex) -> None:
        """Shards and ids go to files named after this build, then the state file that names them is replaced
        (the commit), then the files of earlier builds are removed: a reader or a crash never mixes two builds."""
        import faiss

        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            build = uuid.uuid4().hex[:12]
            shard_files = [f"vectors.{build}.{n}.faiss" for n in range(len(vectors.shards))]
            for name, shard in zip(shard_files, vectors.shards, strict=True):
                faiss.write_index(shard, str(self.directory / name))
            ids_file = f"vectors.{build}.ids.npy"
            np.save(self.directory / ids_file, vectors.ids)
            suffix = f".tmp{os.getpid()}"
            if vectors.large:
                staged = getattr(vectors.rerank, "filename", None)  # streamed or appended there already
                staged = Path(staged).resolve() if staged else None
                if staged != self.rerank_file.resolve():
                    if staged != Path(str(self.rerank_file) + suffix).resolve():
                        with open(str(self.rerank_file) + suffix, "wb") as f:
                            np.save(f, np.asarray(vectors.rerank, dtype=np.float16))
                    os.replace(str(self.rerank_file) + suffix, self.rerank_file)
            state = {"generation": vectors.generation, "epoch": vectors.epoch, "count": len(vectors.ids),
                     "large": vectors.large, "trained_count": vectors.trained_count,
                     "candidates": vectors.candidates, "nprobe": vectors.nprobe, "kind": vectors.kind,
                     "shard_files": shard_files, "shard_sizes": [len(ids) for ids in vectors.shard_ids],
                     "ids_file": ids_file}
            Path(str(self.state_file) + suffix).write_text(json.dumps(state))
            os.replace(str(self.state_file) + suffix, self.state_file)
        except OSError:  # a read-only index folder still searches; it just rebuilds in memory each time
            self._remove_builds(lambda name: name.startswith(f"vectors.{build}."))  # what this one wrote, if any
            return
        self._remove_builds(lambda name: not name.startswith(f"vectors.{build}."))

    def _remove_builds(self, which) -> None:
        """Removes the shard and id files whose names `which` accepts (a reader that mapped one keeps its pages)."""
        for path in self.directory.glob("vectors.*"):
            ours = BUILD_FILE.fullmatch(path.name) or path.name in (LEGACY_INDEX_FILE, LEGACY_IDS_FILE)
            if ours and which(path.name):
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
