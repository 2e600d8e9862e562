"""Cluster a collection: spherical KMeans (FAISS) with a given or automatic k, or HDBSCAN leaving outliers out.

Memory stays bounded at 100k+ images: KMeans streams the float16 vectors through FAISS, automatic k and
HDBSCAN work on a sample, and the remaining images are assigned to their nearest centroid / sample point.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np

from lookalike.errors import LookalikeError

NOISE = -1


@dataclass
class Clustering:
    ids: np.ndarray
    labels: np.ndarray  # cluster per image, NOISE (-1) for HDBSCAN outliers
    method: str
    k: int
    silhouette: float | None  # on the sample used to choose k (cosine), when computed

    def sizes(self) -> dict[int, int]:
        values, counts = np.unique(self.labels, return_counts=True)
        return dict(zip(values.tolist(), counts.tolist(), strict=True))


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def kmeans(vectors: np.ndarray, k: int, seed: int = 0, niter: int = 25):
    import faiss

    # min_points_per_centroid=1: small collections are fine to cluster; FAISS's default (39) printed a warning
    # for every k tried by the silhouette search (nine on a typical run).
    model = faiss.Kmeans(vectors.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False,
                         max_points_per_centroid=512, min_points_per_centroid=1)
    model.train(np.ascontiguousarray(vectors, dtype=np.float32))
    return model


def assign(centroids: np.ndarray, matrix: np.ndarray, chunk: int = 65536) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    labels = [index.search(matrix[s:s + chunk].astype(np.float32), 1)[1][:, 0] for s in range(0, len(matrix), chunk)]
    return np.concatenate(labels).astype(np.int64)


def choose_k(sample: np.ndarray, candidates: list[int], seed: int = 0) -> tuple[int, float]:
    """The k with the best cosine silhouette on the sample."""
    from sklearn.metrics import silhouette_score

    best = (candidates[0], -1.0)
    for k in candidates:
        labels = assign(kmeans(sample, k, seed).centroids, sample)
        if len(set(labels.tolist())) < 2:
            continue
        score = float(silhouette_score(sample, labels, metric="cosine"))
        if score > best[1]:
            best = (k, score)
    return best


def cluster_vectors(ids: np.ndarray, matrix: np.ndarray, k: int | None = None, method: str = "kmeans",
                    sample_size: int = 4000, min_cluster_size: int = 5, seed: int = 0) -> Clustering:
    n = len(ids)
    if n < 2:
        raise LookalikeError("clustering needs at least 2 indexed images")
    sample = matrix[_sample(n, sample_size, seed)].astype(np.float32)
    if method == "kmeans":
        silhouette = None
        if k is None:
            top = min(20, max(2, int(np.sqrt(len(sample)))), len(sample) - 1)
            k, silhouette = choose_k(sample, list(range(2, top + 1)), seed)
        if not 1 <= k <= n:
            raise LookalikeError(f"--k must be between 1 and the number of images ({n})")
        centroids = kmeans(matrix.astype(np.float32) if n <= 200_000 else sample, k, seed).centroids
        return Clustering(ids, assign(centroids, matrix), "kmeans", k, silhouette)
    if method == "hdbscan":
        return _hdbscan(ids, matrix, sample_size * 5, min_cluster_size, seed)
    raise LookalikeError(f"unknown clustering method '{method}': choose kmeans or hdbscan")


def _hdbscan(ids, matrix, sample_size: int, min_cluster_size: int, seed: int) -> Clustering:
    """Density clusters on a PCA-reduced sample; other images join the cluster of their nearest sample point."""
    import faiss
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA

    picked = _sample(len(ids), sample_size, seed)
    sample = matrix[picked].astype(np.float32)
    components = min(64, sample.shape[1], len(sample))
    pca = PCA(n_components=components, random_state=seed).fit(sample)
    reduced = pca.transform(sample)
    sample_labels = HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(reduced)
    if len(picked) == len(ids):
        labels = sample_labels
    else:
        index = faiss.IndexFlatIP(sample.shape[1])
        index.add(sample)
        nearest = np.concatenate([index.search(matrix[s:s + 65536].astype(np.float32), 1)[1][:, 0]
                                  for s in range(0, len(ids), 65536)])
        labels = sample_labels[nearest]
    k = len(set(labels.tolist()) - {NOISE})
    return Clustering(ids, labels.astype(np.int64), "hdbscan", k, None)


def cluster_index(index, **options) -> Clustering:
    ids, matrix, _ = index.catalog.all_vectors(index.dim)
    return cluster_vectors(ids, matrix, **options)


# -- outputs ---------------------------------------------------------------------------------------

def rows(index, clustering: Clustering) -> list[dict]:
    paths = index.catalog.paths_for(clustering.ids.tolist())
    return [{"id": int(i), "cluster": int(c), "relative_path": paths[int(i)],
             "path": index.source.full_path(paths[int(i)])}
            for i, c in zip(clustering.ids, clustering.labels, strict=True)]


def link_folders(entries: list[dict], out: Path) -> None:
    """cluster-003/<file> symlinks (outliers in 'outliers/') for browsing in any file manager."""
    if out.exists():
        shutil.rmtree(out)
    for entry in entries:
        folder = out / ("outliers" if entry["cluster"] == NOISE else f"cluster-{entry['cluster']:03d}")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / entry["relative_path"].replace("/", "--")).symlink_to(entry["path"])


def contact_sheet(entries: list[dict], out_file: Path, per_cluster: int = 24, read=None) -> None:
    """One self-contained HTML page: a row of thumbnails per cluster (`read` as in dupes.write_html_report)."""
    from lookalike.dupes import REPORT_CSS, thumbnail_data_uri

    by_cluster: dict[int, list[dict]] = {}
    for entry in entries:
        by_cluster.setdefault(entry["cluster"], []).append(entry)
    sections = []
    for cluster in sorted(by_cluster, key=lambda c: (c == NOISE, -len(by_cluster[c]))):
        members = by_cluster[cluster]
        title = "outliers" if cluster == NOISE else f"cluster {cluster}"
        sources = [read(m["relative_path"]) if read else m["path"] for m in members[:per_cluster]]
        tiles = "".join(
            f'<figure><img loading="lazy" alt="" src="{thumbnail_data_uri(source, 160)}">'
            f'<figcaption>{escape(m["relative_path"])}</figcaption></figure>'
            for m, source in zip(members, sources, strict=False))
        more = f"<p>… and {len(members) - per_cluster} more</p>" if len(members) > per_cluster else ""
        sections.append(f"<section><h2>{title} · {len(members)} images</h2>{tiles}{more}</section>")
    out_file.write_text(f"<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
                        f"<title>lookalike clusters</title><style>{REPORT_CSS}</style><h1>Clusters</h1>"
                        + "".join(sections), encoding="utf-8")


PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def map_png(matrix: np.ndarray, labels: np.ndarray, out_file: Path, size: int = 900, max_points: int = 50_000,
            seed: int = 0) -> None:
    """A 2-D PCA map of the collection, one colour per cluster (outliers grey), drawn with Pillow."""
    from PIL import Image, ImageDraw
    from sklearn.decomposition import PCA

    picked = _sample(len(matrix), max_points, seed)
    points = PCA(n_components=2, random_state=seed).fit_transform(matrix[picked].astype(np.float32))
    low, high = points.min(axis=0), points.max(axis=0)
    scaled = (points - low) / np.where(high - low > 0, high - low, 1) * (size - 40) + 20
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    radius = 4 if len(picked) < 2000 else 2
    for (x, y), label in zip(scaled, labels[picked], strict=True):
        colour = (200, 200, 200) if label == NOISE else PALETTE[int(label) % len(PALETTE)]
        draw.ellipse((x - radius, size - y - radius, x + radius, size - y + radius), fill=colour)
    draw.text((10, 5), f"{len(picked)} images, PCA 2-D, colour = cluster", fill="black")
    os.makedirs(out_file.parent, exist_ok=True)
    image.save(out_file)
