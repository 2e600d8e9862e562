"""Fusion search for catalogues: rank by image similarity and by how well each item's name matches the query.

For a product catalogue where every image has a name, a query photo is compared with each image (image-image
cosine) and with each name (image-text cosine through CLIP). The two cosines live on different scales (CLIP
image-image ~0.5-1, image-text ~0.1-0.35), so the tutorials' fixed "text × 3" is a guess. Here each score is
standardised over the collection for this query (z-scores), then mixed: fused = w·z_image + (1−w)·z_label.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.errors import LookalikeError, ModalityError
from lookalike.search import Query, query_vector

CHUNK = 65536


@dataclass(frozen=True)
class FusedMatch:
    id: int
    path: str
    relative_path: str
    label: str
    score: float  # the fused z-score mix: comparable within one query only
    image_score: float  # cosine query image ↔ catalogue image
    label_score: float  # cosine query image ↔ catalogue name

    def as_dict(self) -> dict:
        return {"id": self.id, "path": self.path, "relative_path": self.relative_path, "label": self.label,
                "score": round(self.score, 6), "image_score": round(self.image_score, 6),
                "label_score": round(self.label_score, 6)}


def label_from_filename(relative_path: str) -> str:
    """'shoes/red_running-shoe_02.jpg' → 'red running shoe'."""
    stem = Path(relative_path).stem
    words = re.sub(r"[_\-.]+", " ", stem)
    return re.sub(r"\s*\d+$", "", words).strip() or stem


def load_labels(index, csv_file: str | os.PathLike | None = None) -> dict[int, str]:
    """id → label: from a CSV (columns `path` and `label` or `name`; paths relative to the indexed folder)
    or, without one, from each file name."""
    rows = index.catalog.rows()
    if csv_file is None:
        return {row.id: label_from_filename(path) for path, row in rows.items()}
    labels = {}
    with open(csv_file, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        column = next((c for c in ("label", "name", "title") if c in (reader.fieldnames or [])), None)
        if column is None or "path" not in (reader.fieldnames or []):
            raise LookalikeError(f"{csv_file}: needs a 'path' column and a 'label' (or 'name') column")
        for entry in reader:
            row = rows.get(entry["path"].strip().removeprefix("./"))
            if row is not None:
                labels[row.id] = entry[column].strip()
    for path, row in rows.items():
        labels.setdefault(row.id, label_from_filename(path))
    return labels


def standardise(scores: np.ndarray) -> np.ndarray:
    spread = scores.std()
    return (scores - scores.mean()) / (spread if spread > 1e-9 else 1.0)


def fused_search(index, query: Query, labels: dict[int, str], image_weight: float = 0.5,
                 k: int = 10) -> list[FusedMatch]:
    if not 0.0 <= image_weight <= 1.0:
        raise LookalikeError("--image-weight must be between 0 and 1")
    embedder = index.embedder
    if "text" not in embedder.modalities:
        raise ModalityError(f"fusion with labels compares the query with names as text; {index.model_id} embeds "
                            "images only. Index with a text-capable model (--model clip).")
    vector = query_vector(embedder, query)
    ids, matrix, _ = index.catalog.all_vectors(index.dim)
    if not len(ids):
        return []
    image_scores = np.concatenate([matrix[s:s + CHUNK].astype(np.float32) @ vector for s in range(0, len(ids), CHUNK)])
    names = sorted({labels[int(i)] for i in ids})
    name_vectors = _label_vectors(index, names)
    position = {name: p for p, name in enumerate(names)}
    label_scores = (name_vectors @ vector)[[position[labels[int(i)]] for i in ids]]
    fused = image_weight * standardise(image_scores) + (1 - image_weight) * standardise(label_scores)
    top = np.argsort(-fused)[:k]
    paths = index.catalog.paths_for(ids[top].tolist())
    return [FusedMatch(int(ids[t]), index.source.full_path(paths[int(ids[t])]), paths[int(ids[t])], labels[int(ids[t])],
                       float(fused[t]), float(image_scores[t]), float(label_scores[t])) for t in top]


def _label_vectors(index, names: list[str]) -> np.ndarray:
    """Text vectors of the names, cached on the open index (a catalogue's names change rarely)."""
    cache = index.__dict__.setdefault("_label_vector_cache", {})
    missing = [n for n in names if n not in cache]
    for start in range(0, len(missing), 256):
        chunk = missing[start:start + 256]
        cache.update(zip(chunk, index.embedder.embed_texts(chunk), strict=True))
    return np.stack([cache[n] for n in names])
