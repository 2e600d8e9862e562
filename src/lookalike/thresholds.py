"""The near-duplicate threshold in use, and where it came from.

A calibrated threshold silently changes what `dupes` reports, so every place that uses one says which it is: the
model's default, or the value `lookalike calibrate` measured (when, on how many images). `calibrate --reset` and
`index --reindex` (a new model) return to the default.

Copy models (sscd, sscd-distilled) also have a copy-score threshold: `dupes` groups their pairs by the copy score
(cosine minus the pair's background, `lookalike.dupes_grouping`), and `calibrate` measures it too. It is stored
beside the cosine one under the key `<model>#copy`.

`calibrate` also refuses a threshold that would merge clearly distinct photos of its own set: if two different
originals are at least that similar, the measurement is wrong for this collection, whatever precision it reached.
"""

from __future__ import annotations

import datetime
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lookalike.errors import LookalikeError
from lookalike.models.specs import SPECS, short_name, spec_for, thresholds_for

if TYPE_CHECKING:
    from lookalike.evaluate import ModelReport


# Copy-score thresholds of `dupes` (cosine − β/2 × both images' background, see lookalike.dupes_grouping), from
# the model specs (measured with benchmarks/vs_immaculate.py's sweep, docs/performance.md).
COPY_SCORE_THRESHOLDS = {spec.id: spec.thresholds.copy_score for spec in SPECS if spec.thresholds.copy_score}
COPY = "#copy"  # the key suffix of a copy-score threshold


@dataclass(frozen=True)
class ThresholdInfo:
    value: float
    source: str  # "default" (the model's spec), "fallback" (no spec for this model) or "calibrated"
    model: str
    calibrated_at: float | None = None
    images: int | None = None
    default: float | None = None

    @property
    def is_copy_score(self) -> bool:
        return self.model.endswith(COPY)

    def describe(self) -> str:
        text = f"{self.value:.4f} ({self.origin()})"
        return f"copy score {text}" if self.is_copy_score else text

    def origin(self) -> str:
        """Where the value comes from, in words."""
        model = self.model.removesuffix(COPY)
        if self.source == "calibrated":
            when = datetime.datetime.fromtimestamp(self.calibrated_at).date().isoformat() if self.calibrated_at \
                else "an earlier run"
            count = f" from {self.images} images" if self.images else ""
            return f"calibrated on {when}{count}; `lookalike calibrate --reset` restores the default {self.default:.4f}"
        if self.source == "fallback":
            return f"no default measured for {model}: `lookalike calibrate` measures one"
        return f"default for {short_name(model)}"

    def as_dict(self) -> dict:
        return {"value": round(self.value, 6), "source": self.source, "model": self.model,
                "calibrated_at": self.calibrated_at, "images": self.images, "default": self.default,
                "description": self.describe()}


def threshold_info(model_id: str, catalog) -> ThresholdInfo:
    """The cosine threshold of `model_id`, or with a `#copy` key (`copy_threshold_info`) its copy-score one."""
    base = model_id.removesuffix(COPY)
    default = COPY_SCORE_THRESHOLDS[base] if model_id.endswith(COPY) else thresholds_for(base).dupes
    stored = (catalog.get_meta("thresholds") or {}).get(model_id)
    if stored is None:
        return ThresholdInfo(default, "default" if spec_for(base) else "fallback", model_id, default=default)
    details = (catalog.get_meta("calibration") or {}).get(model_id, {})
    return ThresholdInfo(float(stored), "calibrated", model_id, details.get("at"), details.get("images"), default)


def copy_threshold_info(model_id: str, catalog) -> ThresholdInfo | None:
    """The copy-score threshold `dupes` groups `model_id`'s pairs by (None: a model without one, e.g. pdq)."""
    return threshold_info(model_id + COPY, catalog) if model_id in COPY_SCORE_THRESHOLDS else None


def store_calibration(catalog, model_id: str, value: float, images: int, at: float) -> None:
    thresholds = catalog.get_meta("thresholds") or {}
    calibration = catalog.get_meta("calibration") or {}
    with catalog.transaction() as conn:
        catalog.set_meta(conn, thresholds={**thresholds, model_id: value},
                         calibration={**calibration, model_id: {"at": at, "images": images}})


def reset_calibration(catalog, model_id: str | None = None) -> bool:
    """Forget the calibrated thresholds (cosine and copy score) of one model (all models when None); True if
    there was one."""
    thresholds = catalog.get_meta("thresholds") or {}
    calibration = catalog.get_meta("calibration") or {}
    had = bool(thresholds) if model_id is None else any(m.removesuffix(COPY) == model_id for m in thresholds)
    keep = {} if model_id is None else {m: v for m, v in thresholds.items() if m.removesuffix(COPY) != model_id}
    keep_details = {} if model_id is None else {m: v for m, v in calibration.items()
                                                if m.removesuffix(COPY) != model_id}
    with catalog.transaction() as conn:
        catalog.set_meta(conn, thresholds=keep, calibration=keep_details)
    return had


def check_separates(value: float, names: list[str], vectors: np.ndarray) -> None:
    """Refuse a threshold at or below the similarity of two distinct originals of the calibration set."""
    worst = None
    for (a, va), (b, vb) in itertools.combinations(zip(names, vectors, strict=True), 2):
        score = float(va @ vb)
        if score >= value and (worst is None or score > worst[0]):
            worst = (score, a, b)
    if worst is not None:
        raise LookalikeError(
            f"the measured threshold {value:.4f} would call two different originals duplicates "
            f"({worst[1]} and {worst[2]}: cosine {worst[0]:.4f}); nothing was stored. Calibrate on more, "
            "more varied originals, or pass `dupes --threshold` explicitly.")


def calibrate(index, originals, workdir, seed: int = 0) -> tuple[ThresholdInfo, ModelReport]:
    """Measure the index model's threshold at 90 % precision on edited copies of `originals` (generated in
    `workdir`), check it keeps the originals apart, and store it. Returns (the stored threshold, the report)."""
    import time
    from pathlib import Path

    from lookalike.evaluate import evaluate_model, generate_copy_detection_set
    from lookalike.images import scan
    from lookalike.indexer import embed_files

    files = scan(originals).files
    if len(files) < 4:
        raise LookalikeError(f"{originals} holds {len(files)} images: calibrate needs at least 4 distinct originals")
    dataset = generate_copy_detection_set(Path(originals), Path(workdir) / "data", seed=seed)
    report = evaluate_model(dataset, index.model_id)
    value = report.threshold_at_90_precision
    if value is None:
        raise LookalikeError(f"{index.model_id} never reached 90 % precision on these images; nothing was stored")
    embedded = [(f.relpath, v) for f, v, _ in embed_files(files, index.embedder, path_of=lambda f: f.path)
                if v is not None]
    check_separates(value, [name for name, _ in embedded], np.stack([v for _, v in embedded]))
    store_calibration(index.catalog, index.model_id, value, len(files), time.time())
    calibrate_copy_score(index, dataset, len(files))
    return threshold_info(index.model_id, index.catalog), report


def calibrate_copy_score(index, dataset, images: int) -> ThresholdInfo | None:
    """Measure and store the copy-score threshold `dupes` groups the index's copy model by (95 % precision of
    pairs on the calibration set, see `evalcopy.dupes_copy_threshold`); None without a copy model."""
    import time

    from lookalike.copyindex import copy_model
    from lookalike.evalcopy import dupes_copy_threshold
    from lookalike.models.registry import load_embedder

    model = copy_model(index)
    if model is None or model not in COPY_SCORE_THRESHOLDS:
        return None
    measured = dupes_copy_threshold(dataset, load_embedder(model))
    if measured is None:
        raise LookalikeError(f"{model}'s copy score never reached 95 % precision on these images; the copy-score "
                             "threshold was not stored")
    store_calibration(index.catalog, model + COPY, measured[0], images, time.time())
    return copy_threshold_info(model, index.catalog)


def dupes_threshold(index) -> ThresholdInfo:
    """The threshold `dupes` uses by default: the copy model's copy-score one, else the cosine one."""
    from lookalike.copyindex import copy_model

    model = copy_model(index)
    found = copy_threshold_info(model, index.catalog) if model else None
    return found or threshold_info(model or index.model_id, index.catalog)
