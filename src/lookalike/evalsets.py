"""Copy-detection data sets for evaluation: generated from a folder of originals (every edit family of
`lookalike.edits`, a share of originals held out so their copies are negatives), or read from DISC21's layout."""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.edits import EDIT_FAMILIES
from lookalike.errors import ImageError, LookalikeError
from lookalike.images import load_image, scan


@dataclass
class CopyDetectionSet:
    references: list[Path]  # the database
    queries: list[Path]
    truth: list[str | None]  # reference name per query (its file stem), None for negatives
    families: list[str]  # edit family per query

    @property
    def reference_names(self) -> list[str]:
        return [p.stem for p in self.references]


def generate_copy_detection_set(originals: Path, out: Path, seed: int = 0, negative_fraction: float = 0.2,
                                families: list[str] | None = None,
                                distractors: Path | None = None) -> CopyDetectionSet:
    """References = originals (minus held-out ones) + distractors; queries = every edit of every original.
    Edits of held-out originals are the negatives: their original is not in the database."""
    rng = np.random.default_rng(seed)
    families = families or list(EDIT_FAMILIES)
    unknown = set(families) - set(EDIT_FAMILIES)
    if unknown:
        raise LookalikeError(f"unknown edit families {sorted(unknown)}; choose from {', '.join(EDIT_FAMILIES)}")
    files = scan(originals).files
    if len(files) < 2:
        raise LookalikeError(f"{originals}: need at least 2 original images")
    held_out = set(rng.choice(len(files), max(1, int(len(files) * negative_fraction)), replace=False).tolist())
    (out / "references").mkdir(parents=True, exist_ok=True)
    (out / "queries").mkdir(exist_ok=True)
    references: list[Path] = []
    queries: list[Path] = []
    truth: list[str | None] = []
    query_families: list[str] = []
    for number, file in enumerate(files):
        try:
            image = load_image(file.path)
        except ImageError as exc:  # one empty or broken original must not end the evaluation
            warnings.warn(f"skipped original {file.relpath}: {exc}", stacklevel=2)
            continue
        name = f"R{number:05d}"
        if number not in held_out:
            reference = out / "references" / f"{name}.png"
            image.save(reference)
            references.append(reference)
        for family in families:
            edited = EDIT_FAMILIES[family](image, rng)
            query = out / "queries" / f"Q{len(queries):06d}-{family}.png"  # lossless: the edit is the only change
            edited.save(query, pnginfo=fresh_metadata())
            queries.append(query)
            truth.append(None if number in held_out else name)
            query_families.append(family)
    for number, file in enumerate(scan(distractors).files if distractors else []):
        reference = out / "references" / f"D{number:06d}{file.path.suffix.lower()}"
        reference.write_bytes(file.path.read_bytes())
        references.append(reference)
    dataset = CopyDetectionSet(references, queries, truth, query_families)
    with open(out / "ground_truth.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["query_id", "reference_id", "family"])
        for query, reference_id, family in zip(queries, truth, query_families, strict=True):
            writer.writerow([query.stem, reference_id or "", family])
    return dataset


def fresh_metadata():
    """A text chunk that makes every query file differ from its reference's bytes, even a pure re-save."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "lookalike eval")
    return info


def load_disc21_set(queries_dir: Path, references_dir: Path, ground_truth_csv: Path) -> CopyDetectionSet:
    """DISC21 layout: query and reference folders, and a CSV of query_id,reference_id (empty = negative)."""
    by_stem = {}
    for directory in (queries_dir, references_dir):
        for file in scan(directory).files:
            by_stem[(directory, file.path.stem)] = file.path
    truth_by_query = {}
    with open(ground_truth_csv, newline="") as f:
        for row in csv.DictReader(f):
            truth_by_query[row["query_id"]] = row.get("reference_id") or None
    queries = sorted(p for (d, _), p in by_stem.items() if d == queries_dir)
    references = sorted(p for (d, _), p in by_stem.items() if d == references_dir)
    return CopyDetectionSet(references, queries, [truth_by_query.get(q.stem) for q in queries],
                            ["disc21"] * len(queries))


# -- running a model -------------------------------------------------------------------------------
