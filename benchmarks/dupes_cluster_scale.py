"""Dupes and cluster at 100k images (synthetic 512-d vectors): time and peak memory, against the N×N recipe.

The common recipe (imagededup, many tutorials) builds the full N×N similarity matrix: 4·N² bytes, 40 GB at
100k. lookalike uses chunked kNN search instead. Both run side by side at 10k (where the matrix still fits), and
lookalike alone at 100k. Every measurement runs in a fresh process so peak RSS is its own.

    python benchmarks/dupes_cluster_scale.py [--n 100000] [--baseline-n 10000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

DIM = 512


def make_vectors(n: int, planted_pairs: int, seed: int = 0) -> np.ndarray:
    """Random unit vectors in 50 loose themes, plus `planted_pairs` near-duplicates (cos ≈ 0.95)."""
    rng = np.random.default_rng(seed)
    themes = rng.normal(size=(50, DIM))
    vectors = themes[rng.integers(0, 50, n)] * 0.5 + rng.normal(size=(n, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for i in range(planted_pairs):
        copy = vectors[i] + 0.3 * rng.normal(size=DIM) / np.sqrt(DIM)
        vectors[n - 1 - i] = copy / np.linalg.norm(copy)
    return vectors.astype(np.float32)


def build_index(folder: Path, vectors: np.ndarray):
    import lookalike
    from lookalike.store.catalog import NewImage

    idx = lookalike.open(folder, model="phash")  # a light model; the verbs only read the stored vectors
    with idx.catalog.transaction() as conn:
        idx.catalog.set_meta(conn, model="synthetic-512", dim=DIM)
        for i, vector in enumerate(vectors):
            idx.catalog.insert(conn, NewImage(f"img{i:07d}.jpg", 1000, i, f"h{i}", 640, 480, vector))
        idx.catalog.bump(conn)
    idx.model_id = "synthetic-512"
    return idx


def lookalike_dupes(n: int, planted: int, out) -> None:
    from lookalike.dupes import find_duplicates

    with tempfile.TemporaryDirectory() as tmp:
        idx = build_index(Path(tmp), make_vectors(n, planted))
        idx.vectors()  # the search structure is built by `lookalike index`, not by dupes: build it outside
        with PeakGrowth() as memory:
            start = time.perf_counter()
            groups = find_duplicates(idx, threshold=0.9, k=10)
            elapsed = time.perf_counter() - start
        found = sum(1 for g in groups if len(g.members) == 2)
    out.put({"what": f"lookalike dupes n={n}", "seconds": elapsed, "peak_rss_mb": _rss_mb(),
             "rss_growth_mb": round(memory.growth), "found_pairs": found, "planted": planted})


def matrix_dupes(n: int, planted: int, out) -> None:
    vectors = make_vectors(n, planted)
    with PeakGrowth() as memory:
        start = time.perf_counter()
        similarity = vectors @ vectors.T  # the N×N recipe
        np.fill_diagonal(similarity, -1)
        rows, cols = np.nonzero(np.triu(similarity >= 0.9))
        elapsed = time.perf_counter() - start
    out.put({"what": f"N×N matrix dupes n={n}", "seconds": elapsed, "peak_rss_mb": _rss_mb(),
             "rss_growth_mb": round(memory.growth), "found_pairs": len(rows), "planted": planted})


def lookalike_cluster(n: int, k: int | None, out) -> None:
    from lookalike.cluster import cluster_vectors

    vectors = make_vectors(n, 0).astype(np.float16)
    with PeakGrowth() as memory:
        start = time.perf_counter()
        result = cluster_vectors(np.arange(n), vectors, k=k)
        elapsed = time.perf_counter() - start
    out.put({"what": f"lookalike cluster n={n} k={'auto' if k is None else k}", "seconds": elapsed,
             "peak_rss_mb": _rss_mb(), "rss_growth_mb": round(memory.growth), "k": result.k})


def sklearn_cluster(n: int, k: int, out) -> None:
    from sklearn.cluster import KMeans

    vectors = make_vectors(n, 0)
    with PeakGrowth() as memory:
        start = time.perf_counter()
        KMeans(n_clusters=k, n_init=1, random_state=0).fit(vectors)
        elapsed = time.perf_counter() - start
    out.put({"what": f"sklearn KMeans n={n} k={k}", "seconds": elapsed, "peak_rss_mb": _rss_mb(),
             "rss_growth_mb": round(memory.growth), "k": k})


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakGrowth:
    """Peak resident memory above the level at entry, sampled every 20 ms (ru_maxrss only ever grows)."""

    def __enter__(self):
        self.start = self.peak = self._current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._current())

    @staticmethod
    def _current() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._current())
        self.growth = self.peak - self.start


def measure(function, *args) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=function, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    print(f"  {result['what']:<34} {result['seconds']:8.2f} s   peak RSS {result['peak_rss_mb']:8.0f} MB   "
          + "  ".join(f"{k}={v}" for k, v in result.items() if k not in ("what", "seconds", "peak_rss_mb")),
          flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--baseline-n", type=int, default=10_000)
    args = parser.parse_args()
    planted = 200
    print(f"dupes (threshold 0.9, {planted} planted near-duplicate pairs)")
    ours_small = measure(lookalike_dupes, args.baseline_n, planted)
    baseline = measure(matrix_dupes, args.baseline_n, planted)
    ours_big = measure(lookalike_dupes, args.n, planted)
    print(f"  at n={args.baseline_n}: lookalike/baseline time ratio {ours_small['seconds'] / baseline['seconds']:.2f}, "
          f"memory growth {ours_small['rss_growth_mb']:.0f} MB vs {baseline['rss_growth_mb']:.0f} MB")
    print(f"  at n={args.n}: the N×N matrix would need {4 * args.n ** 2 / 1e9:.0f} GB; lookalike grew "
          f"{ours_big['rss_growth_mb']:.0f} MB and found {ours_big['found_pairs']}/{planted} planted pairs")
    print("cluster")
    ours = measure(lookalike_cluster, args.baseline_n, 50)
    theirs = measure(sklearn_cluster, args.baseline_n, 50)
    print(f"  at n={args.baseline_n}, k=50: lookalike/sklearn time ratio {ours['seconds'] / theirs['seconds']:.2f}")
    measure(lookalike_cluster, args.n, 50)
    measure(lookalike_cluster, args.n, None)


if __name__ == "__main__":
    main()
