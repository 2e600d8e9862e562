"""Several models in one index, and the copy model's lookups.

An index has one main model (its `images.vector`, the FAISS store, text and semantic search) and may hold more
(`lookalike index DIR --model clip,sscd`), kept in the catalog's `vectors` table. The first copy-detection model
of the index (sscd, sscd-distilled, pdq; see `registry.COPY_THRESHOLDS`) serves `dupes` and copy lookups,
together with its stored variants (flips, turns, regions: `lookalike.copies`). Adding a model later embeds
only that model, and only for the images that lack its vectors.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from lookalike.copies import (
    QUERY_KINDS,
    best_per_image,
    extra_kinds,
    float_search_bits,
    sign_bits,
    variant_images,
    variant_vectors,
)
from lookalike.errors import ImageError, IndexUnusableError
from lookalike.images import load_image
from lookalike.models.registry import COPY_THRESHOLDS, canonical_model_id, load_embedder
from lookalike.store import extra

CHUNK = 16  # images whose variants go through the model together


def index_models(index) -> list[str]:
    """The main model first, then the others the index holds."""
    return [index.model_id, *index.settings.models]


def embedder_of(index, model_id: str):
    """A model of the index, on the runtime its settings name (the main model is the index's own)."""
    return index.embedder if model_id == index.model_id else load_embedder(model_id, index.settings.runtime)


def copy_model(index) -> str | None:
    return next((m for m in index_models(index) if m in COPY_THRESHOLDS), None)


def copy_extras(index) -> tuple[str, ...]:
    return index.settings.copy_variants


def roles(index) -> dict[str, str]:
    """What serves what, for `info`."""
    copy = copy_model(index) or index.model_id
    return {"search": index.model_id, "text": index.model_id if "text" in index.embedder.modalities else "",
            "dupes and copy lookups": copy, "copy variants": ",".join(copy_extras(index)) or "none"}


def fill(index, model_id: str, progress=None, workers: int = 4) -> int:
    """Embed `model_id` (its own vector and its copy variants) for the images that lack it; returns how many."""
    catalog = index.catalog
    todo = extra.missing(catalog, model_id)
    if not todo:
        return 0
    embedder = embedder_of(index, model_id)
    kinds = extra_kinds(model_id, copy_extras(index)) if model_id == copy_model(index) else ()
    main = model_id == index.model_id  # its own vector is already in images.vector
    wanted = kinds if main else ("", *kinds)
    done = 0

    regions = any(kind.startswith("region:") for kind in kinds)
    draft = embedder.draft_size * 2 if regions and embedder.draft_size else embedder.draft_size

    def decode(row):
        try:
            return row[0], load_image(index.read(row[1]), draft_size=draft)
        except (ImageError, OSError):
            return row[0], None

    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(todo), CHUNK):
            decoded = [(i, im) for i, im in pool.map(decode, todo[start:start + CHUNK]) if im is not None]
            found = [variant_vectors(embedder, image, wanted) if wanted else {} for _, image in decoded]
            rows = [(image_id, vectors) for (image_id, _), vectors in zip(decoded, found, strict=True)]
            with catalog.transaction() as conn:
                for image_id, vectors in rows if main else ():
                    vectors[""] = catalog.vector_of(image_id)
                extra.write_many(conn, model_id, rows)
                catalog.bump(conn)
            done += len(decoded)
            if progress:
                progress(done, len(todo))
    return done


@dataclass
class CopyNeighbours:
    ids: np.ndarray
    scores: np.ndarray
    method: str = "exact (copy variants)"


class CopyVectors:
    """Exact inner-product search over a copy model's vectors and variants, ranked per image (best variant)."""

    def __init__(self, owners: np.ndarray, matrix: np.ndarray, generation: int) -> None:
        import faiss

        self.owners, self.generation = owners, generation
        self.variants = max(1, int(np.bincount(owners).max())) if len(owners) else 1
        self.dim = matrix.shape[1]
        # Hashes (PDQ: ±1/16 per bit) are searched as bits: popcount instead of a float matrix product.
        self.codes = sign_bits(matrix) if self.dim % 8 == 0 and len(matrix) else None
        if self.codes is not None:
            self.faiss = faiss.IndexBinaryFlat(self.dim)
            self.faiss.add(self.codes)
            return
        self.faiss = faiss.IndexFlatIP(self.dim)
        for start in range(0, len(matrix), 65_536):
            self.faiss.add(np.ascontiguousarray(matrix[start:start + 65_536], np.float32))

    def search(self, queries: np.ndarray, k: int, exact: bool = True, candidates: int | None = None
               ) -> CopyNeighbours:
        wanted = min(len(self.owners), k * self.variants + self.variants)
        queries = np.asarray(queries, np.float32)
        query_bits = sign_bits(queries) if self.codes is not None else None
        if query_bits is not None:
            bits, positions = self.faiss.search(query_bits, wanted)
            scores = (1 - 2 * bits / self.dim).astype(np.float32)  # cosine of ±1/√dim vectors
        elif self.codes is not None:  # not a hash (e.g. a mean of hashes): compare as floats
            scores, positions = float_search_bits(self.codes, self.dim, queries, wanted)
        else:
            scores, positions = self.faiss.search(np.ascontiguousarray(queries), wanted)
        ids, best = best_per_image(self.owners, scores, positions, k)
        return CopyNeighbours(ids, best)

    def search_variants(self, per_query: list[np.ndarray], k: int) -> CopyNeighbours:
        """Each query given as several vectors (its own dihedral variants): the best of them per image."""
        stacked = np.concatenate(per_query)
        found = self.search(stacked, k)
        starts = np.cumsum([0, *[len(v) for v in per_query]])
        ids = np.full((len(per_query), k), -1, np.int64)
        scores = np.full((len(per_query), k), -np.inf, np.float32)
        for row, (a, b) in enumerate(zip(starts[:-1], starts[1:], strict=True)):
            merged = best_per_image(found.ids[a:b].ravel(), found.scores[a:b].reshape(1, -1),
                                    np.arange((b - a) * k).reshape(1, -1), k)
            ids[row], scores[row] = merged[0][0], merged[1][0]
        return CopyNeighbours(ids, scores)


def copy_vectors(index) -> tuple[str, np.ndarray, np.ndarray, CopyVectors] | None:
    """(model, image ids, their own vectors, searcher over all variants) of the copy model's table rows, or None
    when the index keeps its copy vectors only in the main store (no variants, copy model = main model)."""
    model = copy_model(index)
    if model is None:
        return None
    generation = index.catalog.generation()
    cached = getattr(index, "_copy_cache", None)
    if cached is not None and cached[0] == (model, generation):
        return cached[1]
    dim = embedder_of(index, model).dim
    owners, kinds, matrix = extra.load(index.catalog, model, dim)
    if not len(owners):
        return None
    own = np.asarray([kind == "" for kind in kinds])
    result = (model, owners[own], matrix[own], CopyVectors(owners, matrix, generation))
    index._copy_cache = ((model, generation), result)
    return result


def query_vectors(embedder, image) -> np.ndarray:
    """A query image's variants: its flips and turns (a copy lookup finds mirrored and turned copies from either
    side) and, when it has a flat frame (a border, a screenshot's window), the picture inside it."""
    if embedder.id == "pdq":
        trimmed = variant_images(image, ("trim",))
        own = embedder.dihedral_vectors(image)
        return np.concatenate([own, embedder.embed_images(list(trimmed.values()))]) if trimmed else own
    return embedder.embed_images(list(variant_images(image, QUERY_KINDS).values()))


def find_copies(index, images: list, k: int = 10, min_score: float | None = None) -> list:
    """Copy lookups: each query image (path, URL, bytes, PIL) against the copy model's vectors and variants,
    with the query's own variants (`query_vectors`); results as `SearchResult`s, ranked by the best cosine per
    image, each with its copy score (the cosine minus β × the query's background, `copy_score`)."""
    from lookalike.api import Match, SearchResult
    from lookalike.images import open_query_image

    copy = copy_vectors(index)
    model = copy[0] if copy else index.model_id
    embedder = embedder_of(index, model)
    per_query = [query_vectors(embedder, open_query_image(image, embedder.draft_size)) for image in images]
    wanted, k = k, max(k, 2)  # the second-best is the copy score's background
    if copy is not None:
        found = copy[3].search_variants(per_query, k)
    else:  # no copy model or variants stored: the main store, still with the query's variants
        found = index.vectors().search(np.concatenate(per_query), k * 2)
        starts = np.cumsum([0, *[len(v) for v in per_query]])
        merged = [best_per_image(found.ids[a:b].ravel(), found.scores[a:b].reshape(1, -1),
                                 np.arange((b - a) * found.ids.shape[1]).reshape(1, -1), k)
                  for a, b in zip(starts[:-1], starts[1:], strict=True)]
        found = CopyNeighbours(np.concatenate([m[0] for m in merged]), np.concatenate([m[1] for m in merged]))
    paths = index.catalog.paths_for({int(i) for i in found.ids.ravel() if i >= 0})
    results = []
    for image, ids, scores in zip(images, found.ids, found.scores, strict=True):
        background = float(scores[1]) if len(scores) > 1 and np.isfinite(scores[1]) else 0.0
        matches = [Match(int(i), index.source.full_path(paths[int(i)]), paths[int(i)], float(s),
                         copy_score(float(s), background))
                   for i, s in zip(ids, scores, strict=True)
                   if i >= 0 and int(i) in paths and (min_score is None or s >= min_score)][:wanted]
        results.append(SearchResult(str(image) if not isinstance(image, bytes) else "<bytes>", matches,
                                    f"copy lookup with {model}"))
    return results


BETA = 0.75  # measured with lookalike.evalcopy on the hard set (docs/performance.md)


def copy_score(similarity: float, background: float, beta: float = BETA) -> float:
    """Similarity minus β × the background (the best similarity to anything that is not the match): high for
    copies, low for look-alikes of many images (SSCD's score normalisation; see lookalike.evalcopy)."""
    return float(similarity - beta * background)


def outside_backgrounds(searcher, matrix: np.ndarray, groups: list[list[int]], k: int = 21) -> dict[int, float]:
    """Position → its best similarity to an image outside its own group (dupes' background)."""
    positions = [p for group in groups for p in group]
    found = searcher.search(np.asarray(matrix[positions], np.float32), k)
    group_of = {p: set(group) for group in groups for p in group}
    background = {}
    for position, ids, scores in zip(positions, found.ids, found.scores, strict=True):
        outside = [float(s) for i, s in zip(ids, scores, strict=True) if i >= 0 and int(i) not in group_of[position]]
        background[position] = outside[0] if outside else 0.0
    return background


def attach_copy_scores(groups, ids: np.ndarray, matrix: np.ndarray, searcher, offsets: np.ndarray | None = None
                       ) -> None:
    """Give each duplicate its copy score against its group's keeper: with the `offsets` dupes grouped by
    (lookalike.dupes_grouping), the pair's cosine minus both; else the cosine minus β × the mean of both
    images' best similarity outside the group."""
    if not groups:
        return
    position = {int(image_id): p for p, image_id in enumerate(ids)}
    if offsets is not None:
        for group in groups:
            keeper = float(offsets[position[group.keeper.id]])
            for member in group.others:
                member.copy_score = member.score - keeper - float(offsets[position[member.id]])
        return
    members = [[position[m.id] for m in group.members] for group in groups]
    background = outside_backgrounds(_ById(searcher, ids), matrix, members)
    for group in groups:
        keeper = background[position[group.keeper.id]]
        for member in group.others:
            member.copy_score = copy_score(member.score, (keeper + background[position[member.id]]) / 2)


class _ById:
    """A searcher whose answers are turned from image ids into positions of `ids` (sorted)."""

    def __init__(self, searcher, ids: np.ndarray) -> None:
        self.searcher, self.ids = searcher, ids

    def search(self, queries: np.ndarray, k: int):
        found = self.searcher.search(queries, k)
        positions = np.searchsorted(self.ids, found.ids)
        valid = (found.ids >= 0) & (positions < len(self.ids))
        return CopyNeighbours(np.where(valid, positions, -1), found.scores)


def add_models(index, models: str | None, copy_extras: list[str] | None) -> str | None:
    """`--model clip,sscd`: the first is the main model (returned, checked by the caller), the others are
    recorded and embedded by the next update (only them); `copy_extras` (dihedral, regions) likewise."""
    from lookalike.copies import EXTRAS

    names = [n for n in (models or "").split(",") if n.strip()]
    settings = index.settings
    recorded = list(settings.models)
    others = [canonical_model_id(n) for n in names[1:]]
    for extra_id in others:
        load_embedder(extra_id, settings.runtime)  # refuse a model that can't load before recording it
    wanted = [m for m in others if m != index.model_id and m not in recorded]
    extras = sorted(set(copy_extras or ()))
    if bad := [e for e in extras if e not in EXTRAS]:
        raise IndexUnusableError(f"unknown copy variants {bad}: choose from {', '.join(EXTRAS)}")
    new_variants = copy_extras is not None and tuple(extras) != settings.copy_variants
    if wanted or new_variants:
        changed = settings.changed(models=tuple(recorded + wanted),
                                   copy_variants=tuple(extras) if new_variants else None)
        with index.catalog.transaction() as conn:
            if new_variants:  # other variants: the copy model's rows are re-made
                conn.execute("DELETE FROM vectors")
            index.catalog.set_meta(conn, settings=changed.as_dict())
            index.catalog.bump(conn)
    return names[0] if names else None
