"""`lookalike dupes`: duplicate groups with their keepers, reports, undoable moves, cross-set lookups."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lookalike.cli.common import DbOption, JsonOption, app, console, errors, json_line, shown
from lookalike.models.specs import threshold_help
from lookalike.names import display


@app.command()
def dupes(
    threshold: Annotated[float | None, typer.Option(
        help="Cosine similarity at or above which images are near-duplicates. Default per model: "
        f"{threshold_help('dupes')}; or the value `lookalike calibrate` stored in the index "
        "(`lookalike info` says which).")] = None,
    group_min_score: Annotated[float | None, typer.Option(
        help="Every pair in a group must be at least this similar (stops chains). Default threshold - 0.05.")] = None,
    verify: Annotated[bool, typer.Option(
        help="Rescue pairs below the threshold that local features (ORB + RANSAC, mirrors too) prove to be "
        "copies: tight crops, screenshots. Never drops a pair the threshold accepts.")] = False,
    keep: Annotated[str, typer.Option(help="Keeper rules in order: original (not a crop, framed or overlaid copy "
                                      "of another member), resolution, quality (JPEG), size, oldest, newest, "
                                      "shortest-path.")] = "original,resolution,quality,size,oldest",
    against: Annotated[Path | None, typer.Option(
        help="Cross-set mode: list which images of this folder already exist in the index.")] = None,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Write the groups as CSV.")] = None,
    html: Annotated[Path | None, typer.Option(help="Write an HTML review page with thumbnails.")] = None,
    move_to: Annotated[Path | None, typer.Option(
        help="Move duplicates (not keepers) into this trash folder, with an undo manifest.")] = None,
    link_to: Annotated[Path | None, typer.Option(help="Lay out each group as symlinks in this folder.")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Really move/link; without it, a dry run.")] = False,
    undo: Annotated[Path | None, typer.Option(
        help="Put back every file a previous --move-to --apply moved (give its manifest .jsonl).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find exact and near-duplicate images, suggest which to keep (and why), and optionally move or link them."""
    from lookalike.api import Index
    from lookalike.dupes import apply_actions, find_in_index, write_csv, write_html_report

    if undo is not None:
        from lookalike.moves import undo_moves

        for line in undo_moves(undo):
            errors.print(line, markup=False, highlight=False, soft_wrap=True)
        return
    with Index.open(db=db, create=False) as idx:
        if against is not None:
            _print_cross_set(find_in_index(idx, against, threshold), as_json)
            return
        with _progress(as_json) as progress:
            groups = idx.duplicates(threshold=threshold, group_min_score=group_min_score, verify=verify,
                                    keep=[rule.strip() for rule in keep.split(",") if rule.strip()], progress=progress)
        used = idx.threshold() if threshold is None else None
        root = idx.root
        if html:
            write_html_report(groups, html, read=idx.read)
    if csv_file:
        with open(csv_file, "w", newline="", encoding="utf-8", errors="surrogateescape") as out:
            write_csv(groups, out)
    if as_json:
        print(json_line({"threshold": used.as_dict() if used else {"value": threshold, "source": "--threshold"},
                         "groups": [g.as_dict() for g in groups]}))
    else:
        _print_groups(groups, used.describe() if used else f"{threshold} (--threshold)")
    if move_to or link_to:
        actions = apply_actions(groups, root, move_to=move_to, link_to=link_to, dry_run=not apply)
        for line in actions:
            errors.print(("" if apply else "[dry run] ") + display(line), markup=False, highlight=False, soft_wrap=True)


def _print_groups(groups: list, threshold: str) -> None:
    for number, group in enumerate(groups, 1):
        table = Table(title=f"group {number} · kept: {shown(group.reason)}", title_justify="left", show_edge=False)
        for column in ("", "cosine", "exact", "size", "path", "what"):
            table.add_column(column)
        for member in group.members:
            is_keeper = member is group.keeper
            table.add_row("[green]keep[/]" if is_keeper else "dup", "" if is_keeper else f"{member.score:.4f}",
                          "" if is_keeper else ("yes" if member.exact else ""), f"{member.width}x{member.height}",
                          shown(member.relative_path), shown(member.note))
        console.print(table)
    duplicates = sum(len(g.others) for g in groups)
    console.print(f"{len(groups)} groups, {duplicates} duplicates; threshold {threshold}", highlight=False)


@contextlib.contextmanager
def _progress(disable: bool = False):
    """A Rich progress bar on stderr; yields `update(done, total, what)` for the library's callbacks."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=errors, transient=True, disable=disable) as bar:
        tasks: dict[str, TaskID] = {}

        def update(done: int, total: int, what: str = "working") -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        yield update


def _print_cross_set(found: list, as_json: bool) -> None:
    for path, matches in found:
        if as_json:
            payload = {"path": path, "error": matches} if isinstance(matches, str) else {
                "path": path, "matches": [m.as_dict() for m in matches]}
            print(json_line(payload))
        elif isinstance(matches, str):
            console.print(f"[yellow]skipped[/] {shown(path)}: {shown(matches)}", highlight=False)
        elif matches:
            console.print(f"[red]exists[/]  {shown(path)}  ≈ {shown(matches[0].relative_path)} "
                          f"({matches[0].score:.4f})", highlight=False)
        else:
            console.print(f"[green]new[/]     {shown(path)}", highlight=False)
