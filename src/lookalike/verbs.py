"""The collection verbs of an `Index` (more like this, duplicates, clusters, categories, catalogue fusion, copies,
verified search): thin methods over the pure functions of their modules, mixed into `Index`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lookalike.records import SearchResult
from lookalike.search import Query, make_query

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from lookalike.cluster import Clustering
    from lookalike.compare import Comparison
    from lookalike.dupes import DuplicateGroup
    from lookalike.fusion import FusedMatch
    from lookalike.models.base import Embedder
    from lookalike.recognize import Recognition
    from lookalike.store.catalog import Catalog, ImageDetails, ImageRow
    from lookalike.thresholds import ThresholdInfo


class CollectionVerbs:
    """Needs `catalog`, `dim`, `embedder`, `search_vectors` and `search_many` from the class it is mixed into."""

    catalog: Catalog
    model_id: str
    search_vectors: Callable[..., list[SearchResult]]
    search_many: Callable[..., list[SearchResult]]

    if TYPE_CHECKING:  # provided by Index as properties

        @property
        def dim(self) -> int: ...

        @property
        def embedder(self) -> Embedder: ...

    def similar(self, image_id: int, k: int = 10, min_score: float | None = None,
                exact: bool = False) -> SearchResult:
        """More like this: the images nearest an indexed image (itself first)."""
        vector = self.catalog.vector_of(int(image_id))  # NotFoundError if there is none
        name = self.catalog.paths_for([int(image_id)]).get(int(image_id), f"#{image_id}")
        return self.search_vectors(vector[None], [name], k=k, min_score=min_score, exact=exact)[0]

    def duplicates(self, threshold: float | None = None, group_min_score: float | None = None, k: int = 20,
                   keep: Sequence[str] | None = None, verify: bool = False, progress=None) -> list[DuplicateGroup]:
        """Groups of exact and near duplicates, largest first, each with a suggested keeper and the reason it was
        chosen (see `dupes`); `progress(done, total, what)` follows verification and keeper choice."""
        from lookalike.dupes import find_duplicates
        from lookalike.keeper import DEFAULT_KEEP

        return find_duplicates(self, threshold=threshold, group_min_score=group_min_score, k=k,
                               keep=DEFAULT_KEEP if keep is None else keep, verify=verify, progress=progress)

    # -- what the index holds (for pages and reports; the catalog itself stays private) ----------------------
    def images(self) -> list[ImageRow]:
        """Every indexed image: id, relative path, size in bytes, mtime, content hash, width, height."""
        return list(self.catalog.rows().values())

    def paths(self, ids) -> dict[int, str]:
        """id → relative path, for the ids that are in the index."""
        return self.catalog.paths_for(int(i) for i in ids)

    def details(self, ids) -> dict[int, ImageDetails]:
        """id → path, pixel size, bytes, mtime and hashes, for the ids that are in the index."""
        return self.catalog.details(ids)

    def version(self) -> tuple[int, int]:
        """Changes whenever the indexed collection does: cache what you derive from it under this key."""
        return self.catalog.generation(), self.catalog.epoch()

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every indexed image under the main model, as arrays for your own analysis."""
        ids, matrix, _ = self.catalog.all_vectors(self.dim)
        return ids, matrix

    def clusters(self, k: int | None = None, method: str = "kmeans", min_cluster_size: int = 5,
                 seed: int = 0) -> Clustering:
        """The collection clustered (KMeans with k, automatic k, or HDBSCAN); see `lookalike.cluster`."""
        from lookalike.cluster import cluster_vectors

        return cluster_vectors(*self.embeddings(), k=k, method=method, min_cluster_size=min_cluster_size, seed=seed)

    def threshold(self) -> ThresholdInfo:
        """The threshold `dupes` groups by (the copy model's copy score when the index holds one, else the main
        model's cosine): its default or a calibrated one, and where it came from."""
        from lookalike.thresholds import dupes_threshold

        return dupes_threshold(self)

    def reset_threshold(self) -> bool:
        """Forget the calibrated thresholds of the main model and of the copy model that `dupes` groups by (back
        to their defaults); True if there was one."""
        from lookalike.copyindex import copy_model
        from lookalike.thresholds import reset_calibration

        models = dict.fromkeys([self.model_id, copy_model(self) or self.model_id])
        return any([reset_calibration(self.catalog, model) for model in models])  # a list: reset every one

    def recognize(self, images: list[str | os.PathLike], categories: str | os.PathLike,
                  threshold: float | None = None) -> list[Recognition]:
        """Which category (a folder of example folders, or a prompts YAML) each image belongs to, or unknown."""
        from lookalike.recognize import load_categories

        return load_categories(categories, self.embedder).recognize(list(images), threshold)

    def fused_search(self, query: str | Query | None = None, *, image=None, text=None,
                     labels: str | os.PathLike | dict[int, str] | None = None, image_weight: float = 0.5,
                     k: int = 10) -> list[FusedMatch]:
        """Catalogue search: image similarity fused with the similarity of each image's name (file name, or a
        CSV `path,label`) to the query, both standardised per query."""
        from lookalike.fusion import fused_search, load_labels

        names = labels if isinstance(labels, dict) else load_labels(self, labels)
        return fused_search(self, make_query(image=image, text=text, query=query), names,
                            image_weight=image_weight, k=k)

    def compare(self, a, b, verify: bool = False) -> Comparison:
        """Two images under this index's model, with its verdict bands (the calibrated `dupes` threshold when
        there is one), beside what file, pixel and perceptual hashes say (see `lookalike.compare`)."""
        from lookalike.compare import compare_images
        from lookalike.thresholds import threshold_info

        near = threshold_info(self.model_id, self.catalog).value  # the main model's cosine, calibrated or default
        return compare_images(a, b, self.embedder, verify=verify, near_duplicate_at=near)

    def find_copies(self, images: list, k: int = 10, min_score: float | None = None) -> list[SearchResult]:
        """Originals of edited copies: the copy model (sscd, pdq, …) with flips, turns and stored variants."""
        from lookalike.copyindex import find_copies

        return find_copies(self, images, k=k, min_score=min_score)

    def _verified_search(self, query: Query, k: int, min_score: float | None, exact: bool) -> SearchResult:
        from lookalike.errors import QueryError
        from lookalike.rerank import pool_size, query_image_of, verify_matches

        image = query_image_of(query)
        if image is None:
            raise QueryError(f"--verify needs a query with exactly one image ({query.label!r} has none or several)")
        [found] = self.search_many([query], k=pool_size(k), min_score=min_score, exact=exact)
        return SearchResult(found.query, verify_matches(self, image, found.matches, k), found.method + "+verify")
