"""Large-index mode: IVF-PQ sized to a memory budget + a float16 re-ranking store, built from vectors streamed
in chunks (never all in RAM). Reports build time, peak RSS, bytes per image, latency and recall@10 against
exact search, next to the default structure's memory need (the baseline it replaces when RAM is short).

    python benchmarks/large_index.py [--n 10000000] [--budget 2G]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 512
PROJECTION = np.random.default_rng(12345).standard_normal((32, DIM)).astype(np.float32)


def rows(start: int, stop: int) -> np.ndarray:
    """Embedding-like vectors (32-d latent space in 512-d plus noise), reproducible for any slice."""
    out = []
    for block in range(start // 100_000, (stop - 1) // 100_000 + 1):
        rng = np.random.default_rng(block)
        latent = rng.standard_normal((100_000, 32), dtype=np.float32)
        noise = rng.standard_normal((100_000, DIM), dtype=np.float32)
        x = latent @ PROJECTION + 2.0 * noise
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        lo, hi = max(start, block * 100_000) - block * 100_000, min(stop, (block + 1) * 100_000) - block * 100_000
        out.append(x[lo:hi])
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--budget", default="2G")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--tmp", default=None, help="folder for the float16 file (10M × 512-d: 10 GB)")
    args = parser.parse_args()
    from lookalike.settings import IndexSettings, parse_size
    from lookalike.store.large import IVFPQVectors, large_index_layout

    budget = parse_size(args.budget)
    nlist, m = large_index_layout(args.n, DIM, budget)
    print(f"n = {args.n:,}, budget {budget / 2**30:.2f} GiB → IVF{nlist},PQ{m} + float16 re-rank vectors on disk",
          flush=True)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        start = time.perf_counter()
        # what lookalike's cache does: stream the vectors into the float16 file, then build from that file
        on_disk = np.lib.format.open_memmap(Path(tmp) / "vectors.f16.npy", mode="w+", dtype=np.float16,
                                            shape=(args.n, DIM))
        for chunk in range(0, args.n, 500_000):
            on_disk[chunk:chunk + 500_000] = rows(chunk, min(args.n, chunk + 500_000))
        on_disk.flush()
        del on_disk
        written = time.perf_counter() - start
        print(f"  float16 file written in {written:.0f} s", flush=True)
        vectors = IVFPQVectors.build(np.arange(args.n), np.load(Path(tmp) / "vectors.f16.npy", mmap_mode="r"),
                                     generation=0, settings=IndexSettings(memory_budget=budget))
        build = time.perf_counter() - start
        anonymous, file_backed = rss_gib()
        print(f"  built in {time.perf_counter() - start:.0f} s; tuned: nprobe {vectors.nprobe}, "
              f"{vectors.candidates} candidates re-ranked; RSS now {anonymous:.2f} GiB anonymous + "
              f"{file_backed:.2f} GiB file-backed (peak {peak_rss_gib():.2f} GiB, both kinds)", flush=True)
        measure(args, vectors, vectors.index, nlist, m, build)


def rss_gib() -> tuple[float, float]:
    """(anonymous, file-backed) resident memory: pages of a memory-mapped file count as RSS but are page
    cache the kernel can drop at any time; anonymous memory is what the process really holds."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value
    return tuple(int(fields[name].split()[0]) / 2**20 for name in ("RssAnon", "RssFile"))


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(args, vectors, index, nlist, m, build) -> None:
    in_ram = index.invlists.compute_ntotal() * (m + 8) + nlist * DIM * 4
    rng = np.random.default_rng(99)
    queries = rng.standard_normal((args.queries, 32), dtype=np.float32) @ PROJECTION
    queries += 2.0 * rng.standard_normal((args.queries, DIM), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    scores = np.full((args.queries, 10), -2.0, np.float32)
    truth = np.zeros((args.queries, 10), np.int64)
    for chunk in range(0, args.n, 500_000):  # exact answers, streamed
        block = rows(chunk, min(args.n, chunk + 500_000))
        s = queries @ block.T
        top = np.argpartition(-s, 10, axis=1)[:, :10]
        merged_scores = np.concatenate([scores, np.take_along_axis(s, top, 1)], axis=1)
        merged_ids = np.concatenate([truth, top + chunk], axis=1)
        order = np.argsort(-merged_scores, axis=1)[:, :10]
        scores, truth = np.take_along_axis(merged_scores, order, 1), np.take_along_axis(merged_ids, order, 1)
    latencies, found = [], []
    anon_before, file_before = rss_gib()  # after the exact ground truth, which streams all vectors itself
    for query in queries:
        t = time.perf_counter()
        result = vectors.search(query[None], 10)
        found.append(result.ids[0])
        latencies.append((time.perf_counter() - t) * 1000)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    anon_after, file_after = rss_gib()
    print(f"  build {build:.0f} s (including tuning); in-RAM search structure {in_ram / args.n:.0f} bytes/image; "
          f"anonymous RSS {anon_before:.2f} GiB before the {args.queries} queries, {anon_after:.2f} GiB after; "
          f"file-backed RSS {file_before:.2f} → {file_after:.2f} GiB (pages of the memory-mapped float16 file, "
          "page cache the kernel reclaims under pressure)")
    print(f"  p50 {np.percentile(latencies, 50):.1f} ms, p99 {np.percentile(latencies, 99):.1f} ms, "
          f"recall@10 {recall:.3f} ({result.method})")
    from lookalike.store.policy import BYTES_PER_DIM

    print(f"  baseline: the default structure would need {args.n * DIM * BYTES_PER_DIM / 2**30:.1f} GiB of RAM")


if __name__ == "__main__":
    main()
