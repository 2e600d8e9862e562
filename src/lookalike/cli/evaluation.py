"""`lookalike eval` and `calibrate`: models compared on copy detection and retrieval, thresholds measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lookalike.cli.common import DbOption, JsonOption, app, console, errors
from lookalike.errors import LookalikeError

eval_app = typer.Typer(help="Compare models on copy detection or labelled retrieval.", no_args_is_help=True)


app.add_typer(eval_app, name="eval")


ModelsOption = Annotated[str, typer.Option(
    help="Comma-separated models; md5 is the file-hash baseline.")]


@eval_app.command("copydetect")
def eval_copydetect(
    originals: Annotated[Path | None, typer.Argument(help="Folder of original images (queries are generated).")]
    = None,
    models: ModelsOption = "efficientnet-lite0,phash,md5",
    distractors: Annotated[Path | None, typer.Option(help="Extra reference images that no query copies.")] = None,
    families: Annotated[str | None, typer.Option(help="Comma-separated edit families (default: all).")] = None,
    verify: Annotated[bool, typer.Option(help="Also report each model re-ranked by geometric verification.")]
    = False,
    disc21: Annotated[tuple[Path, Path, Path] | None, typer.Option(
        help="Use an existing data set instead: QUERIES_DIR REFERENCES_DIR GROUND_TRUTH_CSV.")] = None,
    out: Annotated[Path, typer.Option(help="Where report.md/json and the plots go.")] = Path("lookalike-eval"),
    keep_data: Annotated[bool, typer.Option(help="Keep the generated data set in OUT/data (default: a temporary "
                                            "folder, removed at the end).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the generated edits.")] = 0,
    store: Annotated[bool, typer.Option(help="Store the thresholds at 90% precision in the index (--db).")] = False,
    hard: Annotated[bool, typer.Option(
        help="Hard set: large originals cut into tiles (sibling tiles are distractors), 4 hard edits each (15 % "
        "crops, turns, mirror images, screenshots, combos), --distractors copied as references.")] = False,
    db: DbOption = None,
) -> None:
    """Copy detection: accuracy@1/@3, µAP, recall at 90% precision (and its threshold), per-edit accuracy, img/s.

    A model may carry copy options: sscd+dihedral (the query's flips and turns), +regions (references as a grid
    of regions too), +norm (the copy score: similarity normalised by each image's background neighbours)."""
    from lookalike.evaluate import calibrated_thresholds, markdown_table, store_thresholds, write_outputs
    from lookalike.moves import mark_output_folder

    mark_output_folder(out)  # never indexed, even when written inside a photo folder
    dataset, data = _copy_detection_set(originals, disc21, hard, distractors, families, out, keep_data, seed)
    errors.print(f"{len(dataset.references)} references, {len(dataset.queries)} queries "
                 f"({sum(t is None for t in dataset.truth)} negatives)", highlight=False)
    try:
        reports = _evaluate_models(dataset, models, verify)
    finally:
        if data is not None:
            import shutil

            shutil.rmtree(data, ignore_errors=True)
    write_outputs(reports, out)
    console.print(markdown_table(reports), markup=False, highlight=False)
    errors.print(f"report: {out / 'report.md'}, {out / 'report.json'}, plots in {out}", highlight=False)
    if store:
        from lookalike.api import Index

        with Index.open(db=db, create=False) as idx:
            thresholds = calibrated_thresholds(reports)
            store_thresholds(idx, thresholds)
        errors.print(f"stored thresholds {thresholds} in {idx.db_file}", highlight=False)


def _copy_detection_set(originals: Path | None, disc21, hard: bool, distractors: Path | None,
                        families: str | None, out: Path, keep_data: bool, seed: int):
    """(the data set, the folder of generated data to remove afterwards or None)."""
    import tempfile

    from lookalike.evaluate import generate_copy_detection_set, load_disc21_set

    if disc21:
        return load_disc21_set(*disc21), None
    if originals is not None and hard:
        from lookalike.evalcopy import build_hard_set
        from lookalike.images import scan

        extra = sorted(f.path for f in scan(distractors).files) if distractors else []
        return build_hard_set(sorted(f.path for f in scan(originals).files), out / "data", extra, seed=seed), None
    if originals is not None:
        chosen = [f.strip() for f in families.split(",")] if families else None
        data = out / "data" if keep_data else Path(tempfile.mkdtemp(prefix="lookalike-eval-"))
        dataset = generate_copy_detection_set(originals, data, seed=seed, families=chosen, distractors=distractors)
        return dataset, None if keep_data else data
    raise LookalikeError("give ORIGINALS_DIR, or --disc21 QUERIES REFERENCES GROUND_TRUTH")


def _evaluate_models(dataset, models: str, verify: bool) -> list:
    from lookalike.evaluate import evaluate_model

    reports = []
    for model in [m.strip() for m in models.split(",") if m.strip()]:
        if "+" in model:  # a copy method: sscd+dihedral+regions+norm
            from lookalike.evalcopy import evaluate_method

            with errors.status(f"evaluating {model} on {len(dataset.queries)} queries…"):
                reports.append(evaluate_method(dataset, model))
            continue
        with errors.status(f"evaluating {model} on {len(dataset.queries)} queries…"):
            reports.append(evaluate_model(dataset, model))
        if verify and model != "md5":
            with errors.status(f"evaluating {model} + verification…"):
                reports.append(evaluate_model(dataset, model, verify=True))
    return reports


@eval_app.command("retrieval")
def eval_retrieval(
    labelled: Annotated[Path, typer.Argument(help="Folder with one subfolder of images per class.")],
    models: ModelsOption = "efficientnet-lite0,phash",
    labels: Annotated[bool, typer.Option(help="Also evaluate fusion with the class names (text models).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Leave-one-out retrieval: precision@1, mAP and recall@1/5/10 per model."""
    from lookalike.evaluate import evaluate_retrieval

    rows = []
    for model in [m.strip() for m in models.split(",") if m.strip()]:
        rows.append(evaluate_retrieval(labelled, model))
        if labels:
            rows.append(evaluate_retrieval(labelled, model, labels=True))
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(show_edge=False)
    for column in ("model", "P@1", "mAP", "R@1", "R@5", "R@10", "images/s"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["model"], *(f"{row[k]:.3f}" for k in ("precision_at_1", "mAP", "recall_at_1", "recall_at_5",
                                                                 "recall_at_10")), f"{row['images_per_second']:.1f}")
    console.print(table)


@app.command()
def calibrate(
    originals: Annotated[Path | None, typer.Argument(help="Folder of original images representative of yours.")]
    = None,
    reset: Annotated[bool, typer.Option("--reset", help="Forget the calibrated threshold: back to the model's "
                                        "default.")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the generated data set (in a temporary folder, "
                                       "printed at the end).")] = False,
    db: DbOption = None,
) -> None:
    """Measure the index model's threshold at 90% precision on edited copies and store it in the index.

    The edited copies are written to a temporary folder (removed unless --keep), never next to your photos. A
    threshold that would call two of the originals duplicates of each other is refused."""
    import shutil
    import tempfile

    from lookalike.api import Index
    from lookalike.thresholds import calibrate as measure

    with Index.open(db=db, create=False) as idx:
        if reset:
            had = idx.reset_threshold()
            errors.print(("forgot the calibrated threshold; " if had else "no calibrated threshold was stored; ")
                         + f"dupes uses {idx.threshold().describe()}", highlight=False)
            return
        if originals is None:
            raise LookalikeError("give ORIGINALS_DIR to calibrate on, or --reset")
        workdir = Path(tempfile.mkdtemp(prefix="lookalike-calibrate-"))
        try:
            with errors.status(f"calibrating {idx.model_id}: editing copies of {originals} and embedding them…"):
                used, report = measure(idx, originals, workdir)
            grouping = idx.threshold()
        finally:
            if not keep:
                shutil.rmtree(workdir, ignore_errors=True)
    console.print(f"recall at 90% precision {report.recall_at_90_precision:.3f}, µAP {report.micro_ap:.3f}",
                  highlight=False)
    console.print(f"stored threshold {used.describe()}", highlight=False)
    if grouping.is_copy_score:
        console.print(f"stored {grouping.describe()}: dupes groups by it", highlight=False)
    if keep:
        errors.print(f"data set kept in {workdir}", highlight=False)
