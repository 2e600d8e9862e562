"""The hard copy-detection set and copy methods as deployed (variants, score normalisation), for `eval copydetect`.

Why a hard set: on whole distinct photos every model looks good. Here large photos are cut into tiles, each
tile an original, so the sibling tiles of the same photo (same light, colours, texture) are the distractors;
thousands of clip-art images crowd the database; 15 % crops, turns, mirror images, screenshots and combined
edits are the queries, and a fifth of the originals are held out so their copies are negatives.

A method is a model name plus options: `sscd+dihedral` (the query's flips and turns, best score per
reference), `+trim` (also the query without its flat frame, if it has one), `+regions` (references also as a
grid of half-size regions), `+norm` (the copy score below). `find_copies` does sscd+dihedral+trim+norm, with
+regions when the index stores them.

Copy score (the SSCD paper's score normalisation, §3.3, with the collection itself as the background set):
s(q, r) - β · b(q), where b(q) is the query's similarity to its second-best reference, β = 0.75. A query that
resembles many images (a sky, a flat clip-art, a sibling tile) gets a low score even at a high cosine, so one
threshold fits the whole collection and "not a copy" queries score low. Measured on the hard set
(benchmarks/copydetect_hard.py, docs/performance.md), against backgrounds at ranks 2-5, 2-10, 3-7 and a
symmetric (query + reference) form: rank 2 with β = 0.75 gave the best µAP and recall at 90 % precision.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lookalike.copies import QUERY_DIHEDRAL, extra_kinds, variant_vectors
from lookalike.edits import EDIT_FAMILIES
from lookalike.evalsets import CopyDetectionSet, fresh_metadata
from lookalike.evaluate import ModelReport, _report
from lookalike.images import load_image, scan

HARD_FAMILIES = ("crop-15", "crop-50", "rotate-90", "flip", "screenshot", "combo", "resize-25", "blur",
                 "grayscale", "text-overlay", "mirror-crop", "border")
BACKGROUND_RANKS = (2, 3)  # [from, to) 1-based: the second-best reference alone
BETA = 0.75
TILE_MIN = 1600  # photos at least this wide are cut into tiles


def tiles(image, columns: int = 3, rows: int = 2) -> list:
    w, h = image.size
    return [image.crop((c * w // columns, r * h // rows, (c + 1) * w // columns, (r + 1) * h // rows))
            for r in range(rows) for c in range(columns)]


def build_hard_set(photos: list[Path], out: Path, clipart: list[Path], seed: int = 0, per_original: int = 4,
                   negative_fraction: float = 0.2, max_side: int = 1024) -> CopyDetectionSet:
    """Originals = tiles of large photos and whole smaller ones; each gets `per_original` random hard edits."""
    rng = np.random.default_rng(seed)
    originals = []
    for path in photos:
        image = load_image(path)
        parts = tiles(image) if image.width >= TILE_MIN else [image]
        for part in parts:
            part.thumbnail((max_side, max_side))
            originals.append(part)
    held_out = set(rng.choice(len(originals), int(len(originals) * negative_fraction), replace=False).tolist())
    for sub in ("references", "queries"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    references: list[Path] = []
    queries: list[Path] = []
    truth: list[str | None] = []
    families: list[str] = []
    for number, image in enumerate(originals):
        name = f"R{number:05d}"
        if number not in held_out:
            references.append(out / "references" / f"{name}.jpg")
            image.save(references[-1], quality=92)
        for family in rng.choice(HARD_FAMILIES, per_original, replace=False):
            query = out / "queries" / f"Q{len(queries):06d}-{family}.png"
            EDIT_FAMILIES[str(family)](image, rng).save(query, pnginfo=fresh_metadata())
            queries.append(query)
            truth.append(None if number in held_out else name)
            families.append(str(family))
    for number, path in enumerate(clipart):
        references.append(out / "references" / f"D{number:06d}{path.suffix.lower()}")
        shutil.copyfile(path, references[-1])
    return CopyDetectionSet(references, queries, truth, families)


def clipart_files(folder: Path = Path("/usr/share/openclipart"), count: int = 2000, seed: int = 0) -> list[Path]:
    files = sorted(f.path for f in scan(folder).files)
    chosen = np.random.default_rng(seed).choice(len(files), min(count, len(files)), replace=False)
    return [files[i] for i in sorted(chosen)]


def embed_variants(paths: list[Path], embedder, kinds: tuple[str, ...], workers: int = 3
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(owner position per row, vectors) of each file's variants ('' = the image itself)."""
    owners, vectors = [], []
    draft = embedder.draft_size * 2 if any(k.startswith("region:") for k in kinds) else embedder.draft_size
    with ThreadPoolExecutor(workers) as pool:
        for number, image in enumerate(pool.map(lambda p: load_image(p, draft_size=draft), paths)):
            found = variant_vectors(embedder, image, kinds)
            owners += [number] * len(found)
            vectors += list(found.values())
    return np.asarray(owners), np.asarray(vectors, np.float32)


def best_similarity(queries: tuple[np.ndarray, np.ndarray], references: tuple[np.ndarray, np.ndarray]
                    ) -> np.ndarray:
    """(query, reference) similarity: the best over the query's and the reference's variant rows (each file's
    rows are contiguous, so a max-reduce over row runs does it)."""
    def starts(owners: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])

    by_reference = np.maximum.reduceat(queries[1] @ references[1].T, starts(references[0]), axis=1)
    return np.maximum.reduceat(by_reference, starts(queries[0]), axis=0)


def background(similarity: np.ndarray, ranks: tuple[int, int] = BACKGROUND_RANKS) -> np.ndarray:
    """Per row: mean similarity of its neighbours ranked `ranks` (1-based, inclusive-exclusive)."""
    low, high = ranks
    high = min(high, similarity.shape[1])
    low = min(low, high - 1)
    part = -np.partition(-similarity, high - 1, axis=1)[:, :high]
    return np.sort(part, axis=1)[:, ::-1][:, low - 1:high - 1].mean(axis=1)


def copy_scores(similarity: np.ndarray, query_background: np.ndarray, beta: float = BETA) -> np.ndarray:
    """The copy score s - β b(q) (see the module docstring)."""
    return similarity - beta * query_background[:, None]


def evaluate_method(dataset: CopyDetectionSet, method: str, k: int = 10) -> ModelReport:
    """`method` = model[+dihedral][+trim][+regions][+norm]; returns the same report as `evaluate_model`."""
    import time

    from lookalike.models.registry import load_embedder

    model, *options = method.split("+")
    embedder = load_embedder(model)
    start = time.perf_counter()
    reference_kinds = ("", *(extra_kinds(model, ("regions",)) if "regions" in options else ()))
    query_kinds = (*(QUERY_DIHEDRAL if "dihedral" in options else ("",)), *(("trim",) if "trim" in options else ()))
    references = embed_variants(dataset.references, embedder, reference_kinds)
    queries = embed_variants(dataset.queries, embedder, query_kinds)
    speed = (len(dataset.references) + len(dataset.queries)) / (time.perf_counter() - start)
    similarity = best_similarity(queries, references)
    if "norm" in options:
        similarity = copy_scores(similarity, background(similarity))
    k = min(k, len(dataset.references))
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return _report(method, dataset, top, np.take_along_axis(similarity, top, axis=1), speed)


def dupes_copy_threshold(dataset: CopyDetectionSet, embedder, precision: float = 0.95, per_original: int = 2,
                         seed: int = 0) -> tuple[float, float] | None:
    """(copy-score threshold, recall) of `dupes` on a collection made of `dataset`'s references and
    `per_original` of each original's edited copies (a collection holds a few copies of a photo, not every
    edit): the lowest threshold whose accepted pairs are ≥ `precision` right, recall over (copy, original)
    pairs. None when no threshold reaches that precision. Scores as `find_duplicates` computes them."""
    from lookalike.copies import STORED_DIHEDRAL
    from lookalike.dupes import COPY_BACKGROUND_RANK, COPY_BETA, COPY_FLOOR, SURE_COPY
    from lookalike.dupes_grouping import copy_scores

    per_block = len(set(dataset.families))  # generate_copy_detection_set writes every family per original
    rng = np.random.default_rng(seed)
    chosen = [start + int(i) for start in range(0, len(dataset.queries), per_block)
              for i in rng.choice(min(per_block, len(dataset.queries) - start), per_original, replace=False)]
    files = [*dataset.references, *(dataset.queries[i] for i in chosen)]
    origin = [p.stem for p in dataset.references] + [dataset.truth[i] or f"held-out {i // per_block}" for i in chosen]
    own = embed_variants(files, embedder, ("",))
    similarity = best_similarity(own, embed_variants(files, embedder, ("", *STORED_DIHEDRAL)))
    similarity = np.maximum(similarity, similarity.T)
    np.fill_diagonal(similarity, -np.inf)
    ranked = -np.sort(-similarity, axis=1)
    offsets = COPY_BETA / 2 * ranked[:, min(COPY_BACKGROUND_RANK, len(files) - 1) - 1]
    a, b = np.triu_indices(len(files), 1)
    scores = copy_scores(similarity[a, b], offsets[a], offsets[b], SURE_COPY, COPY_FLOOR)
    right = np.array([origin[i] == origin[j] for i, j in zip(a, b, strict=True)])
    wanted = right & (a < len(dataset.references))  # (original, copy) pairs
    order = np.argsort(-scores, kind="stable")
    precisions = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(precisions >= precision)
    if not len(ok) or not wanted.any():
        return None
    last = ok[-1]
    return float(scores[order][last]), float(wanted[order][:last + 1].sum() / wanted.sum())
