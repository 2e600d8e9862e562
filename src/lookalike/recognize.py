"""Recognise which labelled category an image belongs to.

Categories are either subfolders of example images (any model) or text prompts per category (CLIP/SigLIP
zero-shot, from YAML or CSV). A query's score for a category is its cosine similarity to the nearest example
(or prompt), so a category may hold several looks of one thing. Below the category's threshold the answer is
"unknown". Example vectors are cached in the categories folder and re-embedded only when a file changes;
`learn` files an accepted query into its category, vector included, so recognition improves with use.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookalike.errors import LookalikeError
from lookalike.images import scan
from lookalike.indexer import embed_files
from lookalike.models.base import Embedder
from lookalike.models.specs import FALLBACK_PROMPTS, thresholds_for

UNKNOWN = "unknown"
CACHE_DIRNAME = ".lookalike-categories"
SETTINGS_FILE = "categories.yaml"  # optional, in a categories folder: {category: {threshold: 0.8}}


@dataclass
class Category:
    name: str
    vectors: np.ndarray  # one row per example image or prompt
    sources: list[str]  # example paths (relative to the categories folder) or prompts
    threshold: float


@dataclass(frozen=True)
class Recognition:
    query: str
    label: str  # the best category, or "unknown" below its threshold
    category: str | None  # the best category whatever its score
    score: float
    nearest: str | None  # the example or prompt that matched best
    runner_up: str | None
    runner_up_score: float | None
    threshold: float

    @property
    def accepted(self) -> bool:
        return self.label != UNKNOWN

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()} | {
            "accepted": self.accepted}


@dataclass
class CategorySet:
    categories: list[Category]
    embedder: Embedder
    folder: Path | None = None  # example folders only: where `learn` files accepted queries
    cache: dict = field(default_factory=dict)

    def recognize_vectors(self, vectors: np.ndarray, labels: list[str],
                          threshold: float | None = None) -> list[Recognition]:
        if not self.categories:
            raise LookalikeError("no categories: add subfolders with example images (or prompts)")
        results = []
        for label, vector in zip(labels, np.atleast_2d(vectors), strict=True):
            scored = []
            for category in self.categories:
                scores = category.vectors @ vector
                best = int(np.argmax(scores))
                scored.append((float(scores[best]), category, category.sources[best]))
            scored.sort(key=lambda s: -s[0])
            score, category, nearest = scored[0]
            limit = threshold if threshold is not None else category.threshold
            runner = scored[1] if len(scored) > 1 else None
            results.append(Recognition(
                query=label, label=category.name if score >= limit else UNKNOWN, category=category.name,
                score=score, nearest=nearest, runner_up=runner[1].name if runner else None,
                runner_up_score=runner[0] if runner else None, threshold=limit,
            ))
        return results

    def recognize(self, paths: Sequence[str | os.PathLike], threshold: float | None = None) -> list[Recognition]:
        results = []
        for path, vector, error in embed_files([str(p) for p in paths], self.embedder):
            if error is not None or vector is None:
                raise LookalikeError(f"cannot read {path}: {error}")
            results.extend(self.recognize_vectors(vector[None], [str(path)], threshold))
        return results

    def learn(self, path: str | os.PathLike, recognition: Recognition, vector: np.ndarray | None = None) -> Path:
        """Copy an accepted query into its category folder and cache its vector (no re-embedding later)."""
        if self.folder is None:
            raise LookalikeError("--learn needs categories given as folders of example images")
        if not recognition.accepted:
            raise LookalikeError(f"{path} was not recognised (score {recognition.score:.3f}); nothing learned")
        source = Path(path)
        target_dir = self.folder / recognition.label
        target = target_dir / source.name
        counter = 1
        while target.exists():
            target = target_dir / f"{source.stem}-{counter}{source.suffix}"
            counter += 1
        shutil.copy2(source, target)
        if vector is None:
            [(_, vector, error)] = list(embed_files([str(target)], self.embedder))
            if vector is None:
                raise LookalikeError(f"cannot read {target}: {error}")
        category = next(c for c in self.categories if c.name == recognition.label)
        relative = target.relative_to(self.folder).as_posix()
        category.vectors = np.vstack([category.vectors, vector[None]])
        category.sources.append(relative)
        stat = target.stat()
        self.cache[relative] = (stat.st_size, stat.st_mtime_ns, vector)
        _save_cache(self.folder, self.embedder, self.cache)
        return target


def load_categories(source: str | os.PathLike, embedder: Embedder) -> CategorySet:
    """A folder of example subfolders, or a .yaml/.yml/.csv file of text prompts per category."""
    source = Path(source).expanduser()
    if source.is_dir():
        return _from_folder(source, embedder)
    if source.suffix.lower() in (".yaml", ".yml", ".csv") and source.is_file():
        return _from_prompts(source, embedder)
    raise LookalikeError(f"{source}: expected a folder of category subfolders, or a YAML/CSV file of prompts")


def _read_settings(folder: Path) -> dict:
    path = folder / SETTINGS_FILE
    if not path.is_file():
        return {}
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def _from_folder(folder: Path, embedder: Embedder) -> CategorySet:
    settings = _read_settings(folder)
    default = thresholds_for(embedder.id).examples
    cache = _load_cache(folder, embedder)
    files = scan(folder).files
    fresh, stale = {}, []
    for file in files:
        if "/" not in file.relpath:
            continue  # images directly in the folder belong to no category
        cached = cache.get(file.relpath)
        if cached and cached[:2] == (file.size, file.mtime_ns):
            fresh[file.relpath] = cached
        else:
            stale.append(file)
    for file, vector, _error in embed_files(stale, embedder, path_of=lambda f: f.path):
        if vector is not None:  # unreadable examples are left out
            fresh[file.relpath] = (file.size, file.mtime_ns, vector)
    if stale or len(fresh) != len(cache):
        _save_cache(folder, embedder, fresh)
    by_category: dict[str, list[str]] = {}
    for relpath in sorted(fresh):
        by_category.setdefault(relpath.split("/", 1)[0], []).append(relpath)
    categories = [
        Category(name, np.stack([fresh[p][2] for p in paths]), paths,
                 float((settings.get(name) or {}).get("threshold", default)))
        for name, paths in by_category.items()
    ]
    return CategorySet(categories, embedder, folder, fresh)


def _from_prompts(path: Path, embedder: Embedder) -> CategorySet:
    default = thresholds_for(embedder.id).prompts or FALLBACK_PROMPTS
    entries: dict[str, dict] = {}
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                entry = entries.setdefault(row["category"].strip(), {"prompts": []})
                entry["prompts"].append(row["prompt"].strip())
                if row.get("threshold"):
                    entry["threshold"] = float(row["threshold"])
    else:
        import yaml

        for name, value in (yaml.safe_load(path.read_text()) or {}).items():
            entries[str(name)] = {"prompts": [value] if isinstance(value, str) else list(value)} if not isinstance(
                value, dict) else {"prompts": list(value.get("prompts", [])), **value}
    categories = []
    for name, entry in entries.items():
        prompts = [p for p in entry["prompts"] if p]
        if not prompts:
            raise LookalikeError(f"category '{name}' in {path} has no prompts")
        categories.append(Category(name, embedder.embed_texts(prompts), prompts,
                                   float(entry.get("threshold", default))))
    return CategorySet(categories, embedder)


def _cache_file(folder: Path, embedder: Embedder) -> Path:
    key = hashlib.sha1(embedder.id.encode()).hexdigest()[:12]
    return folder / CACHE_DIRNAME / f"{key}.npz"


def _load_cache(folder: Path, embedder: Embedder) -> dict:
    path = _cache_file(folder, embedder)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta["model"] != embedder.id:
                return {}
            return {p: (s, m, v) for p, s, m, v in zip(meta["paths"], meta["sizes"], meta["mtimes"], data["vectors"],
                                                       strict=True)}
    except (OSError, KeyError, ValueError):
        return {}


def _save_cache(folder: Path, embedder: Embedder, entries: dict) -> None:
    path = _cache_file(folder, embedder)
    path.parent.mkdir(exist_ok=True)
    paths = sorted(entries)
    meta = {"model": embedder.id, "paths": paths, "sizes": [entries[p][0] for p in paths],
            "mtimes": [entries[p][1] for p in paths]}
    vectors = np.stack([entries[p][2] for p in paths]) if paths else np.zeros((0, embedder.dim), np.float32)
    temporary = path.with_suffix(".tmp.npz")
    np.savez(temporary, meta=json.dumps(meta), vectors=vectors)
    os.replace(temporary, path)
