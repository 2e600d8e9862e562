"""Search latency at 100k and 1M images (random 512-d unit vectors, the hardest case for ANN).

Compares lookalike's search structures (exact float16 up to 50k images, PQ fast-scan + float16 re-rank above, split into
one shard per core from 250k images per core) with the
Python-loop recipe of the tutorials and with FAISS flat float32, all in this run: single-query p50/p99, recall@10
against exact search, build time and memory per image.

    python benchmarks/search_latency.py [--sizes 100000,1000000] [--queries 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lookalike.store.policy import build_structure

DIM = 512


def unit_vectors(n: int, seed: int, kind: str = "random") -> np.ndarray:
    """`random`: isotropic unit vectors, no neighbourhood structure at all (the issue's worst case).
    `embedding-like`: a 32-d latent space mapped into 512-d plus noise, the low intrinsic dimension that real
    CLIP/DINOv2 embeddings have (their nearest neighbours stand out from the crowd)."""
    rng = np.random.default_rng(seed)
    projection = np.random.default_rng(12345).standard_normal((32, DIM), dtype=np.float32)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        if kind == "random":
            block = rng.standard_normal((size, DIM), dtype=np.float32)
        else:
            block = rng.standard_normal((size, 32), dtype=np.float32) @ projection
            block += 0.5 * np.sqrt(32) * rng.standard_normal((size, DIM), dtype=np.float32) / np.sqrt(DIM) * 4
        out[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def latencies(search, queries: np.ndarray) -> tuple[np.ndarray, list]:
    times, found = [], []
    for query in queries:
        start = time.perf_counter()
        found.append(search(query))
        times.append((time.perf_counter() - start) * 1000)
    return np.array(times), found


def recall_at_10(found: list, truth: np.ndarray) -> float:
    return float(np.mean([len(set(np.asarray(f)[:10].tolist()) & set(t.tolist())) / 10
                          for f, t in zip(found, truth, strict=True)]))


def python_loop(vectors: np.ndarray, query: np.ndarray) -> list[int]:
    """The tutorial recipe: score every stored vector in a Python loop, then sort."""
    scores = [float(np.dot(query, vector)) for vector in vectors]
    return sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[:10]


def report(name: str, times: np.ndarray, recall: float | None, extra: str = "") -> dict:
    recall_text = f"recall@10 {recall:.3f}" if recall is not None else ""
    print(f"  {name:<28} p50 {np.percentile(times, 50):9.2f} ms   p99 {np.percentile(times, 99):9.2f} ms   "
          f"{recall_text} {extra}", flush=True)
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99)), "recall": recall}


def run(n: int, n_queries: int, kind: str) -> None:
    import faiss

    print(f"n = {n:,} {kind} vectors of {DIM} dims", flush=True)
    vectors = unit_vectors(n, seed=0, kind=kind)
    queries = unit_vectors(n_queries, seed=1, kind=kind)
    flat = faiss.IndexFlatIP(DIM)
    flat.add(vectors)
    _, truth = flat.search(queries, 10)

    start = time.perf_counter()
    index = build_structure(np.arange(n), vectors, generation=0)
    build = time.perf_counter() - start
    size = sum(faiss.serialize_index(shard).nbytes for shard in index.shards)
    ours = report(f"lookalike ({index.search(queries[:1], 10).method.split('(')[0]})",
                  *_searched(lambda q: index.search(q, 10).ids[0], queries, truth),
                  extra=f"build {build:.1f} s, {size / n:.0f} bytes/image, "
                  f"{index.candidates} candidates tuned, {len(index.shards)} shard(s)")
    exact = report("lookalike --exact", *_searched(lambda q: index.search(q, 10, exact=True).ids[0],
                                                    queries[:20], truth[:20]))
    baseline = report("FAISS flat float32", *_searched(lambda q: flat.search(q[None], 10)[1][0], queries, truth),
                      extra=f"{DIM * 4} bytes/image")
    loop_queries = 3 if n > 200_000 else 10
    loop = report("Python loop (tutorial)", *_searched(lambda q: python_loop(vectors, q), queries[:loop_queries],
                                                        truth[:loop_queries]))
    print(f"  speed-up p50: {loop['p50'] / ours['p50']:.0f}x over the Python loop, "
          f"{baseline['p50'] / ours['p50']:.1f}x over FAISS flat; exact mode {exact['p50']:.1f} ms", flush=True)


def _searched(search, queries, truth):
    times, found = latencies(search, queries)
    return times, recall_at_10(found, truth)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--kinds", default="embedding-like,random")
    args = parser.parse_args()
    for n in (int(s) for s in args.sizes.split(",")):
        for kind in args.kinds.split(","):
            run(n, args.queries, kind)


if __name__ == "__main__":
    main()
