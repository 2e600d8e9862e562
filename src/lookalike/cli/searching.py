"""`lookalike search` and `compare`: queries by image, text or both, and two images side by side."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lookalike.cli.common import DbOption, JsonOption, ModelOption, app, console, errors, json_line, shown
from lookalike.errors import LookalikeError


@app.command()
def search(
    queries: Annotated[list[str] | None, typer.Argument(
        help="Image paths, http(s) URLs, or query expressions like '2:golden retriever + pool.jpg - fruit'. "
        "Each is searched separately.")] = None,
    text: Annotated[list[str] | None, typer.Option(
        "--text", "-t", help="Text term, repeatable; '-night' subtracts, '2:sunset' weighs. Added to every query, "
        "or searched on its own when no QUERY is given.")] = None,
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="How many results per query.")] = 10,
    min_score: Annotated[float | None, typer.Option(help="Drop results below this cosine similarity.")] = None,
    exact: Annotated[bool, typer.Option(help="Exhaustive search even where the index is approximate (> 50k images).")]
    = False,
    verify: Annotated[bool, typer.Option(
        help="Check 3x more candidates with local features (ORB + RANSAC, mirrors too) and list proven copies of "
        "the query image first, with where they sit. Never drops a result.")] = False,
    labels: Annotated[bool, typer.Option(
        "--labels", help="Catalogue fusion: also score each image's name (its file name, or --labels-file) "
        "against the query, standardise both scores per query and mix them (needs a text-capable model).")] = False,
    labels_file: Annotated[Path | None, typer.Option(help="CSV with columns path,label for --labels.")] = None,
    image_weight: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="With --labels: weight of the image score (the label gets the rest).")] = 0.5,
    copies: Annotated[bool, typer.Option(
        "--copies", help="Copy lookup: find the originals of these (edited) images with the index's copy model, "
        "their flips and turns.")] = False,
    paths_only: Annotated[bool, typer.Option("--paths", "-f", help="Print only the paths, one per line (for "
                                             "piping, e.g. into `xargs`).")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search the index by image and/or text. Scores are cosine similarities (higher = more similar); a line
    marks where results stop being matches (the near-duplicate threshold for images, else a gap in the scores).

    JSON output: one line per query, {"query", "method", "results": [{"path", "relative_path", "score",
    "percent", "id", "verification"?}], "matches": N}; `path` is absolute, `relative_path` is relative to the
    indexed folder; `percent` is (cosine+1)/2, shown only there.
    """
    from lookalike.api import Index
    from lookalike.search import Query, break_point, make_query, parse_query

    text_query = make_query(text=text) if text else Query()
    parsed = [parse_query(q) + text_query for q in queries or []] or ([text_query] if text else [])
    if not parsed:
        raise LookalikeError("give an image, a URL or a --text to search for (see `lookalike search --help`)")
    with Index.open(db=db, create=False) as idx:
        if labels or labels_file:
            _print_fused(idx, parsed, labels_file, image_weight, top, as_json)
            return
        with errors.status("verifying candidates…") if verify and not (as_json or paths_only) else \
                contextlib.nullcontext():
            results = idx.find_copies(queries or [], k=top, min_score=min_score) if copies else \
                idx.search_many(parsed, k=top, min_score=min_score, exact=exact, verify=verify)
        threshold = idx.threshold().value
    for query, result in zip(parsed, results, strict=True):
        images_only = query.modalities == {"image"}
        cut = break_point([m.score for m in result.matches], threshold if images_only else None)
        if paths_only:
            print("\n".join(shown(m.path) for m in result.matches))
        elif as_json:
            print(json_line({**result.as_dict(), "matches": cut[0] if cut else len(result.matches)}))
        else:
            _print_results(result, cut, verify)


def _print_results(result, cut: tuple[int, str] | None, verify: bool) -> None:
    table = Table(title=shown(result.query), title_justify="left", show_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("cosine", justify="right")
    if verify:
        table.add_column("verified")
    table.add_column("path", overflow="fold")
    for rank, match in enumerate(result.matches, 1):
        if cut and rank - 1 == cut[0]:
            table.add_section()
            table.add_row("", "", *([""] if verify else []), f"[dim]not matches from here: {escape(cut[1])}[/]")
        check = match.verification or {}
        where = f"{'mirrored, ' if check.get('mirrored') else ''}{check.get('inliers', 0)} inliers" \
            if check.get("verified") else ""
        table.add_row(str(rank), f"{match.score:.4f}", *([where] if verify else []), shown(match.relative_path))
    console.print(table)
    if not result.matches:
        console.print("  (no results)")


def _print_fused(idx, queries, labels_file, image_weight, top, as_json) -> None:
    from lookalike.fusion import fused_search, load_labels

    names = load_labels(idx, labels_file)
    for query in queries:
        matches = fused_search(idx, query, names, image_weight=image_weight, k=top)
        if as_json:
            print(json_line({"query": query.label, "image_weight": image_weight,
                             "results": [m.as_dict() for m in matches]}))
            continue
        table = Table(title=f"{shown(query.label)} (image weight {image_weight:g})", title_justify="left",
                      show_edge=False)
        for column in ("#", "fused", "image cos", "label cos", "label", "path"):
            table.add_column(column)
        for rank, m in enumerate(matches, 1):
            table.add_row(str(rank), f"{m.score:+.2f}", f"{m.image_score:.4f}", f"{m.label_score:.4f}",
                          shown(m.label), shown(m.relative_path))
        console.print(table)


@app.command()
def compare(
    image_a: Annotated[str, typer.Argument(help="First image (path or URL).")],
    image_b: Annotated[str, typer.Argument(help="Second image (path or URL).")],
    model: ModelOption = None,
    verify: Annotated[bool, typer.Option(help="Also check with local features (ORB + RANSAC, mirrors too): is one "
                                         "a view of the other, and where does it sit?")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Similarity of two images, beside what file MD5, pixel MD5 and perceptual hashes say. In an index (and
    without --model) its model and its calibrated threshold decide the verdict."""
    result = _compared(image_a, image_b, model, db, verify)
    if as_json:
        print(json.dumps(result.as_dict()))
        return
    table = Table(show_header=True, show_edge=False, title=f"{image_a}  vs  {image_b}", title_justify="left")
    table.add_column("method")
    table.add_column("answer", justify="right")
    table.add_column("verdict")

    def same(flag: bool | None) -> str:
        return "n/a" if flag is None else ("[green]identical[/]" if flag else "[red]different[/]")

    near, similar = result.near_duplicate_at, result.similar_at
    verdict = {"near-duplicate": f"[green]near-duplicate[/] (≥ {near:.2f})",
               "similar": f"[yellow]similar[/]: same subject, not a copy ({similar:.2f} ≤ cosine < {near:.2f})",
               "different": f"different (< {similar:.2f})"}[result.verdict]
    table.add_row(f"embedding ({result.model})", f"cosine {result.cosine:.4f}", verdict)
    table.add_row("file MD5", "", same(result.file_md5_equal))
    table.add_row("pixel MD5 (decoded)", "", same(result.pixel_md5_equal))
    table.add_row("perceptual hash (pHash)", f"{result.phash_distance}/64 bits differ",
                  "[green]near-duplicate[/]" if result.phash_distance <= 10 else "[red]different[/]")
    table.add_row("difference hash (dHash)", f"{result.dhash_distance}/64 bits differ",
                  "[green]near-duplicate[/]" if result.dhash_distance <= 10 else "[red]different[/]")
    if result.verification is not None:
        check = result.verification
        region = check["region"]
        where = f"; in {'A' if region['in'] == 'a' else 'B'} at {region['quad']}" if region else ""
        table.add_row("local features (ORB + RANSAC)", f"{check['inliers']} inliers",
                      ("[green]a view of the other[/]" + (" (mirrored)" if check["mirrored"] else "") + escape(where))
                      if check["verified"] else f"[red]not verified[/] ({escape(check['reason'] or '')})")
    console.print(table)
    console.print(f"sizes: {result.sizes[0][0]}x{result.sizes[0][1]} and {result.sizes[1][0]}x{result.sizes[1][1]}",
                  highlight=False)


def _compared(image_a: str, image_b: str, model: str | None, db: Path | None, verify: bool):
    """In an index (and with its model or none named): the index's compare, with its calibrated threshold."""
    from lookalike.api import Index, compare, find_index
    from lookalike.models.registry import DEFAULT_MODEL, canonical_model_id

    if (db or find_index()) is not None:
        with Index.open(db=db, create=False) as idx:
            if model is None or canonical_model_id(model) == idx.model_id:
                return idx.compare(image_a, image_b, verify=verify)
    return compare(image_a, image_b, model or DEFAULT_MODEL, verify=verify)
