"""Evaluation: compare models on copy detection and on labelled retrieval, and calibrate thresholds.

Copy detection follows DISC21: every query either copies one reference or none (negatives), predictions are
(query, reference, score) triples pooled over all queries, and micro-average precision (µAP) is the area under
the pooled precision-recall curve, recall counted over the positive queries. Negatives make precision honest.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookalike.errors import LookalikeError
from lookalike.evalsets import CopyDetectionSet, generate_copy_detection_set, load_disc21_set
from lookalike.images import load_image, scan

__all__ = ["CopyDetectionSet", "ModelReport", "evaluate_model", "evaluate_retrieval", "generate_copy_detection_set",
           "load_disc21_set", "markdown_table", "write_outputs"]

# -- metrics ---------------------------------------------------------------------------------------

def micro_average_precision(scores: np.ndarray, correct: np.ndarray, positives: int) -> float:
    """µAP: average precision over pooled predictions sorted by score, recall over `positives` queries."""
    if positives == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = np.asarray(correct, dtype=bool)[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(np.sum(precision[hits]) / positives)


def precision_recall(scores: np.ndarray, correct: np.ndarray, positives: int):
    """(precision, recall, threshold) arrays along the pooled predictions, best score first."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = np.asarray(correct, dtype=bool)[order]
    true_positives = np.cumsum(hits)
    precision = true_positives / np.arange(1, len(hits) + 1)
    recall = true_positives / max(positives, 1)
    return precision, recall, np.asarray(scores, dtype=np.float64)[order]


def recall_at_precision(scores, correct, positives: int, target: float = 0.9) -> tuple[float, float | None]:
    """The best recall whose precision is ≥ target, and the score threshold that gives it (None if never)."""
    precision, recall, thresholds = precision_recall(scores, correct, positives)
    ok = np.nonzero(precision >= target)[0]
    if not len(ok):
        return 0.0, None
    best = ok[np.argmax(recall[ok])]
    return float(recall[best]), float(thresholds[best])


def accuracy_at(ranked: list[list[str]], truth: list[str | None], k: int) -> float:
    """Fraction of positive queries whose reference is among the first k candidates."""
    pairs = [(r, t) for r, t in zip(ranked, truth, strict=True) if t is not None]
    return float(np.mean([t in r[:k] for r, t in pairs])) if pairs else 0.0


@dataclass
class ModelReport:
    model: str
    accuracy_at_1: float
    accuracy_at_3: float
    micro_ap: float
    recall_at_90_precision: float
    threshold_at_90_precision: float | None
    per_family: dict[str, float]
    images_per_second: float | None
    curve: tuple[list[float], list[float]] = field(default=([], []), repr=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "curve"}


def _embed(paths: list[Path], embedder) -> tuple[np.ndarray, float]:
    from lookalike.indexer import embed_files

    start = time.perf_counter()
    vectors = []
    for path, vector, error in embed_files([str(p) for p in paths], embedder):
        if error is not None or vector is None:
            raise LookalikeError(f"cannot read {path}: {error}")
        vectors.append(vector)
    elapsed = time.perf_counter() - start
    return np.stack(vectors), len(paths) / elapsed


def _md5_scores(dataset: CopyDetectionSet) -> np.ndarray:
    digest = {p: hashlib.md5(p.read_bytes()).hexdigest() for p in dataset.references + dataset.queries}
    refs = [digest[p] for p in dataset.references]
    # -inf = no prediction at all: a hash either matches or says nothing about similarity.
    return np.array([[1.0 if digest[q] == r else -np.inf for r in refs] for q in dataset.queries])


def evaluate_model(dataset: CopyDetectionSet, model: str, verify: bool = False, k: int = 10) -> ModelReport:
    """Embed references and queries with the real batched pipeline, rank, and score."""
    speed = None
    if model == "md5":
        similarity = _md5_scores(dataset)
    else:
        from lookalike.models.registry import load_embedder

        embedder = load_embedder(model)
        references, speed_refs = _embed(dataset.references, embedder)
        queries, speed_queries = _embed(dataset.queries, embedder)
        speed = (len(dataset.references) + len(dataset.queries)) / (
            len(dataset.references) / speed_refs + len(dataset.queries) / speed_queries)
        similarity = queries @ references.T
    k = min(k, len(dataset.references))
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(similarity, top, axis=1)
    if verify:
        scores = _verified_scores(dataset, top, scores)
        order = np.argsort(-scores, axis=1, kind="stable")
        top, scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(scores, order, axis=1)
    return _report(f"{model}+verify" if verify else model, dataset, top, scores, speed)


def _verified_scores(dataset: CopyDetectionSet, top: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Geometric verification re-ranks the candidates: a verified match scores 1 + inliers/10⁴ (above any
    cosine); an unverified one keeps its cosine minus 1, below every verified one."""
    from lookalike.verify import FeatureCache, verify_features

    cache = FeatureCache()
    rescored = scores.astype(np.float64).copy()
    for q, query in enumerate(dataset.queries):
        query_features = cache.features(("q", q), load_image(query))
        for j, r in enumerate(top[q][:5]):
            reference_features = cache.features(("r", int(r)), load_image(dataset.references[int(r)]))
            check = verify_features(query_features, reference_features)
            rescored[q, j] = 1 + check.inliers / 1e4 if check.verified else scores[q, j] - 1
        rescored[q, 5:] -= 1
    return rescored


def _report(name: str, dataset: CopyDetectionSet, top: np.ndarray, scores: np.ndarray,
            speed: float | None) -> ModelReport:
    names = dataset.reference_names
    predicted = np.isfinite(scores)  # a hash baseline makes no prediction for non-matching files
    ranked = [[names[int(i)] for i in row[ok]] for row, ok in zip(top, predicted, strict=True)]
    correct = np.array([[names[int(i)] == t for i in row] for row, t in zip(top, dataset.truth, strict=True)])
    positives = sum(t is not None for t in dataset.truth)
    flat_scores, flat_correct = scores[predicted], correct[predicted]
    recall90, threshold90 = recall_at_precision(flat_scores, flat_correct, positives, 0.9)
    precision, recall, _ = precision_recall(flat_scores, flat_correct, positives)
    per_family = {}
    for family in dict.fromkeys(dataset.families):
        chosen = [i for i, f in enumerate(dataset.families) if f == family and dataset.truth[i] is not None]
        if chosen:
            per_family[family] = accuracy_at([ranked[i] for i in chosen], [dataset.truth[i] for i in chosen], 1)
    return ModelReport(name, accuracy_at(ranked, dataset.truth, 1), accuracy_at(ranked, dataset.truth, 3),
                       micro_average_precision(flat_scores, flat_correct, positives), recall90, threshold90,
                       per_family, speed, (precision.tolist(), recall.tolist()))


# -- labelled retrieval ----------------------------------------------------------------------------

def evaluate_retrieval(folder: Path, model: str, labels: bool = False, ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    """Leave-one-out retrieval on a labelled folder (subfolder = class): precision@1, mAP, recall@k.
    With `labels`, ranking is the fusion of image and class-name similarity (text-capable models)."""
    from lookalike.fusion import standardise
    from lookalike.models.registry import load_embedder

    files = [f for f in scan(folder).files if "/" in f.relpath]
    classes = [f.relpath.split("/", 1)[0] for f in files]
    if len(set(classes)) < 2:
        raise LookalikeError(f"{folder}: need at least two class subfolders with images")
    embedder = load_embedder(model)
    vectors, speed = _embed([f.path for f in files], embedder)
    similarity = vectors @ vectors.T
    if labels:
        names = sorted(set(classes))
        text = embedder.embed_texts(names)
        label_similarity = (vectors @ text.T)[:, [names.index(c) for c in classes]]
        similarity = 0.5 * np.apply_along_axis(standardise, 1, similarity) + 0.5 * np.apply_along_axis(
            standardise, 1, label_similarity)
    np.fill_diagonal(similarity, -np.inf)
    classes_array = np.array(classes)
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :-1]
    relevant = classes_array[order] == classes_array[:, None]
    precision_at_rank = np.cumsum(relevant, axis=1) / np.arange(1, relevant.shape[1] + 1)
    counts = relevant.sum(axis=1)
    average_precision = np.where(counts > 0, (precision_at_rank * relevant).sum(axis=1) / np.maximum(counts, 1), 0)
    return {"model": model + ("+labels" if labels else ""), "precision_at_1": float(relevant[:, 0].mean()),
            "mAP": float(average_precision.mean()),
            **{f"recall_at_{k}": float(relevant[:, :k].any(axis=1).mean()) for k in ks},
            "images_per_second": speed, "images": len(files), "classes": len(set(classes))}


# -- outputs ---------------------------------------------------------------------------------------

def markdown_table(reports: list[ModelReport]) -> str:
    lines = ["| model | acc@1 | acc@3 | µAP | recall@90%P | threshold@90%P | images/s |",
             "|---|---|---|---|---|---|---|"]
    for r in reports:
        threshold = f"{r.threshold_at_90_precision:.3f}" if r.threshold_at_90_precision is not None else "—"
        speed = f"{r.images_per_second:.1f}" if r.images_per_second else "—"
        lines.append(f"| {r.model} | {r.accuracy_at_1:.3f} | {r.accuracy_at_3:.3f} | {r.micro_ap:.3f} | "
                     f"{r.recall_at_90_precision:.3f} | {threshold} | {speed} |")
    families = list(reports[0].per_family) if reports else []
    if families:
        lines += ["", "accuracy@1 per edit family:", "",
                  "| family | " + " | ".join(r.model for r in reports) + " |",
                  "|---|" + "---|" * len(reports)]
        for family in families:
            lines.append(f"| {family} | " + " | ".join(f"{r.per_family.get(family, 0):.2f}" for r in reports) + " |")
    return "\n".join(lines)


def write_outputs(reports: list[ModelReport], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(markdown_table(reports) + "\n")
    (out / "report.json").write_text(json.dumps([r.as_dict() for r in reports], indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return  # plots need the `eval` extra (matplotlib); the table and JSON are written regardless
    figure, axis = plt.subplots(figsize=(6, 5))
    for r in reports:
        precision, recall = r.curve
        axis.plot(recall, precision, label=f"{r.model} (µAP {r.micro_ap:.2f})")
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="Copy detection: pooled PR")
    axis.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "precision_recall.png", dpi=110)
    plt.close(figure)
    families = list(reports[0].per_family)
    figure, axis = plt.subplots(figsize=(max(6, len(families) * 0.6), 4))
    width = 0.8 / max(1, len(reports))
    for n, r in enumerate(reports):
        axis.bar(np.arange(len(families)) + n * width, [r.per_family.get(f, 0) for f in families], width,
                 label=r.model)
    axis.set_xticks(np.arange(len(families)) + 0.4 - width / 2, families, rotation=60, ha="right", fontsize=8)
    axis.set(ylabel="accuracy@1", ylim=(0, 1.05), title="Per edit family")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "per_edit.png", dpi=110)
    plt.close(figure)


def calibrated_thresholds(reports: list[ModelReport]) -> dict[str, float]:
    """Model id → the similarity that reached 90% precision (models that never did are left out)."""
    from lookalike.models.registry import canonical_model_id

    return {canonical_model_id(r.model): r.threshold_at_90_precision for r in reports
            if r.threshold_at_90_precision is not None and "+" not in r.model and r.model != "md5"}


def store_thresholds(index, thresholds: dict[str, float]) -> None:
    """Remember calibrated thresholds in the index: `dupes` (and friends) then default to them."""
    current = index.catalog.get_meta("thresholds", {}) or {}
    with index.catalog.transaction() as conn:
        index.catalog.set_meta(conn, thresholds={**current, **thresholds})
