"""The `lookalike` command: one small function per verb; the work happens in the library (lookalike.api)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lookalike.errors import LookalikeError
from lookalike.names import display

app = typer.Typer(
    help="Find similar images: index a folder, then search by image or text, compare, and more.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)

DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="The index: a .db file or a folder holding index.db. "
                 "Default: PHOTOS_DIR/.lookalike, found from the current folder upwards like .git."),
]
ModelOption = Annotated[
    str | None,
    typer.Option("--model", "-m", help="clip (default), siglip, dinov2, dinov2-mean, efficientnet-lite0 (offline), "
                 "phash, dhash, sscd, sscd-distilled, pdq (copy detection, offline), a Hugging Face id or a local "
                 "checkpoint folder. `index` takes several: --model clip,sscd (text/semantic search by the first, "
                 "dupes and copy lookups by the copy model)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (JSON Lines for several queries).")]


def shown(text: object) -> str:
    """A name or message for the terminal: escape codes and undecodable bytes escaped, Rich markup inert."""
    return escape(display(str(text)))


def json_line(payload: object) -> str:
    """JSON for stdout. A file name that is not UTF-8 travels as \\udcNN escapes (json.loads gives back the same
    name), so the output is valid UTF-8 and lossless."""
    text = json.dumps(payload, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(payload)
    return text


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"lookalike {version('lookalike')}")
        except PackageNotFoundError:
            print("lookalike (not installed: running from a source tree)")
        raise typer.Exit()


@app.callback()
def options(
    runtime: Annotated[str, typer.Option(
        envvar="LOOKALIKE_RUNTIME", help="Image-model runtime: auto (fastest that keeps cosine ≥ 0.99 to fp32), "
        "torch, bf16, onnx, onnx-int8.")] = "auto",
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    import os

    os.environ["LOOKALIKE_RUNTIME"] = runtime


def main() -> None:
    try:
        app()
    except LookalikeError as exc:
        errors.print(f"[bold red]error:[/] {shown(exc)}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        errors.print("interrupted: everything committed so far is kept; run the command again to finish")
        sys.exit(130)


@app.command()
def index(
    photos_dir: Annotated[str, typer.Argument(
        help="Folder of images (scanned recursively), an fsspec URL (s3://bucket/prefix, gs://…, az://…), or a "
        ".txt/.csv list of image URLs. Remote sources need --db.")],
    model: ModelOption = None,
    db: DbOption = None,
    reindex: Annotated[bool, typer.Option(help="Forget all vectors and embed everything with --model.")] = False,
    copy_variants: Annotated[str | None, typer.Option(
        help="Also store, for the copy model (sscd, sscd-distilled, pdq), vectors of flips and turns ('dihedral') "
        "and/or of a grid of sub-regions ('regions', finds tight crops), comma-separated; 'none' to stop.")] = None,
    include_hidden: Annotated[bool, typer.Option(help="Also index hidden files and folders.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model call.")] = 32,
    store: Annotated[str | None, typer.Option(
        help="Keep vectors in Milvus: milvus://HOST:PORT/COLLECTION or milvus-lite:///PATH.db/COLLECTION "
        "(remembered by the index). Default: the embedded FAISS store.")] = None,
    memory_budget: Annotated[str | None, typer.Option(
        help="RAM for the search structure (e.g. 8G, 512M; remembered by the index): past it, IVF-PQ with "
        "float16 re-ranking from disk. Default: no budget.")] = None,
    engine: Annotated[str, typer.Option(help="Where to embed: local (this process) or ray.")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: start Ray here).")] = None,
    shards: Annotated[str | None, typer.Option("--shards", "--ray-shards", help="--engine ray: where Parquet "
        "shards go (resumable): a directory, or s3://bucket/prefix (any fsspec URL) that every Ray worker can "
        "write. Default: next to the index.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Index a folder (again): only new or changed files are embedded; moved files keep their vectors."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from lookalike.api import Index

    variants = None if copy_variants is None else [v for v in copy_variants.split(",") if v.strip() not in ("", "none")]
    with Index.open(photos_dir, db=db, model=model, reindex=reindex, store=store,
                    memory_budget=memory_budget, copy_extras=variants) as idx:
        columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                   TimeRemainingColumn())
        with Progress(*columns, console=errors, transient=True, disable=as_json) as bar:
            task = bar.add_task("embed", total=None, rate="")

            def progress(done: int, total: int) -> None:
                speed = bar.tasks[0].speed
                bar.update(task, completed=done, total=total, rate=f"{speed:.1f} files/s" if speed else "")

            runner = None
            if engine == "ray":
                from lookalike.distributed import RayEngine

                runner = RayEngine(shards or idx.db_file.parent / f"{idx.db_file.stem}.shards", address=ray_address,
                                   batch_size=batch_size)
            elif engine != "local":
                raise LookalikeError(f"unknown engine '{engine}': choose local or ray")
            def waiting(holder: str) -> None:
                errors.print(f"waiting: this index is being updated by {shown(holder)}", highlight=False)

            report = idx.update(progress=progress, include_hidden=include_hidden, batch_size=batch_size,
                                engine=runner, on_wait=waiting)
        idx.vectors()  # build (or sync) the search structure now rather than at the first search
        info = idx.info()
    if as_json:
        console.print_json(json.dumps({"index": str(info.db), "model": info.model, "images": info.images,
                                       **report.as_dict()}))
        return
    console.print(
        f"[bold]{info.images}[/] images indexed with [cyan]{info.model}[/] in {info.db}\n"
        f"added {report.added}, updated {report.updated}, moved {report.moved}, reused {report.reused}, "
        f"removed {report.removed}, unchanged {report.unchanged}, skipped {len(report.skipped)}",
        highlight=False,
    )
    for path, reason in report.skipped:
        console.print(f"  [yellow]skipped[/] {shown(path)}: {shown(reason)}", highlight=False)


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
    """Similarity of two images, beside what file MD5, pixel MD5 and perceptual hashes say."""
    from lookalike.compare import compare_images
    from lookalike.dupes import default_threshold

    result = compare_images(image_a, image_b, _embedder_for(model, db), verify=verify)  # in an index: its model
    if as_json:
        print(json.dumps(result.as_dict()))
        return
    table = Table(show_header=True, show_edge=False, title=f"{image_a}  vs  {image_b}", title_justify="left")
    table.add_column("method")
    table.add_column("answer", justify="right")
    table.add_column("verdict")

    def same(flag: bool | None) -> str:
        return "n/a" if flag is None else ("[green]identical[/]" if flag else "[red]different[/]")

    threshold = default_threshold(result.model)
    verdict = f"[green]near-duplicate[/] (≥ {threshold:.2f})" if result.cosine >= threshold else \
        f"not a near-duplicate (< {threshold:.2f})"
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


@app.command()
def dupes(
    threshold: Annotated[float | None, typer.Option(
        help="Cosine similarity at or above which images are near-duplicates. Default per model: "
        "efficientnet-lite0 0.75, clip 0.92, dinov2 0.75, phash/dhash 0.6875 (10 of 64 bits), others 0.90; "
        "or the value `lookalike calibrate` stored in the index (`lookalike info` says which).")] = None,
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
    from lookalike.dupes import apply_actions, find_duplicates, find_in_index, write_csv, write_html_report

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
            groups = find_duplicates(idx, threshold=threshold, group_min_score=group_min_score, verify=verify,
                                     keep=[rule.strip() for rule in keep.split(",") if rule.strip()],
                                     progress=progress)
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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=errors, transient=True, disable=disable) as bar:
        tasks: dict[str, int] = {}

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


@app.command()
def recognize(
    queries: Annotated[list[Path], typer.Argument(help="Images to recognise.")],
    categories: Annotated[Path, typer.Option(
        "--categories", "-c", help="Folder of category subfolders with example images, or a YAML/CSV of text "
        "prompts per category (CLIP zero-shot).")],
    threshold: Annotated[float | None, typer.Option(
        help="Below this cosine the answer is 'unknown'. Default per category (categories.yaml) or per model: "
        "efficientnet-lite0 0.55, clip 0.92 with examples / 0.24 with prompts, dinov2 0.6.")] = None,
    learn: Annotated[bool, typer.Option(help="Copy each recognised image into its category folder.")] = False,
    model: ModelOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Which labelled category does each image belong to? Best category, score, runner-up, or 'unknown'."""
    from lookalike.recognize import load_categories

    for path in queries:
        if path.is_dir():
            raise LookalikeError(f"{path} is a folder, not an image: give the images in it (e.g. {path}/*.jpg)")
    category_set = load_categories(categories, _embedder_for(model, db))
    results = category_set.recognize(queries, threshold=threshold)
    table = Table(show_edge=False)
    for column in ("image", "category", "score", "runner-up", "learned"):
        table.add_column(column)
    for path, result in zip(queries, results, strict=True):
        learned = str(category_set.learn(path, result)) if learn and result.accepted else ""
        if as_json:
            print(json_line({**result.as_dict(), "learned": learned or None}))
            continue
        label = f"[green]{result.label}[/]" if result.accepted else f"[yellow]unknown[/] ({result.category}?)"
        runner = f"{result.runner_up} {result.runner_up_score:.3f}" if result.runner_up else ""
        table.add_row(shown(path), label, f"{result.score:.3f} / {result.threshold:.2f}", runner, escape(learned))
    if not as_json:
        console.print(table)


def _embedder_for(model: str | None, db: Path | None):
    """--model, else the model of the index found (or named by --db), else the default model."""
    from lookalike.api import Index, find_index
    from lookalike.models.registry import DEFAULT_MODEL, load_embedder

    if model is None and (db or find_index()) is not None:
        with Index.open(db=db, create=False) as idx:
            model = idx.model_id
    return load_embedder(model or DEFAULT_MODEL)


@app.command()
def cluster(
    k: Annotated[int | None, typer.Option("--k", help="Number of clusters (KMeans); default: chosen by "
                                          "silhouette on a sample.")] = None,
    method: Annotated[str, typer.Option(help="kmeans, or hdbscan (density-based; outliers stay unassigned).")]
    = "kmeans",
    min_cluster_size: Annotated[int, typer.Option(help="hdbscan: smallest cluster.")] = 5,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Write id,cluster,path rows.")] = None,
    links: Annotated[Path | None, typer.Option(help="Make a folder of symlinks per cluster here.")] = None,
    html: Annotated[Path | None, typer.Option(help="Write an HTML contact sheet per cluster.")] = None,
    map_file: Annotated[Path | None, typer.Option("--map", help="Save a 2-D PCA map of the clusters as PNG.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (results are reproducible).")] = 0,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Group the collection into clusters of similar images."""
    import csv

    from lookalike.api import Index
    from lookalike.cluster import NOISE, cluster_vectors, contact_sheet, link_folders, map_png, rows

    with Index.open(db=db, create=False) as idx:
        ids, matrix, _ = idx.catalog.all_vectors(idx.dim)
        with errors.status(f"clustering {len(ids)} images" + ("" if k else " (choosing k by silhouette)") + "…"):
            clustering = cluster_vectors(ids, matrix, k=k, method=method, min_cluster_size=min_cluster_size,
                                         seed=seed)
        entries = rows(idx, clustering)
        if html:
            with errors.status("writing the contact sheet…"):
                contact_sheet(entries, html, read=idx.read)
    if csv_file:
        with open(csv_file, "w", newline="", encoding="utf-8", errors="surrogateescape") as out:
            writer = csv.DictWriter(out, fieldnames=["id", "cluster", "relative_path", "path"])
            writer.writeheader()
            writer.writerows(entries)
    if links:
        link_folders(entries, links)
    if map_file:
        map_png(matrix, clustering.labels, map_file, seed=seed)
    if as_json:
        print(json_line({"method": clustering.method, "k": clustering.k, "silhouette": clustering.silhouette,
                         "images": entries}))
        return
    sizes = clustering.sizes()
    summary = f"{clustering.k} clusters ({clustering.method})"
    if clustering.silhouette is not None:
        summary += f", silhouette {clustering.silhouette:.3f}"
    console.print(summary, highlight=False)
    for label in sorted(sizes, key=lambda c: -sizes[c]):
        examples = [shown(e["relative_path"]) for e in entries if e["cluster"] == label][:4]
        name = "outliers" if label == NOISE else f"cluster {label}"
        console.print(f"  {name}: {sizes[label]} images, e.g. {', '.join(examples)}", highlight=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback requires a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    token: Annotated[str | None, typer.Option(envvar="LOOKALIKE_TOKEN", help="Every API call must send "
                                              "'Authorization: Bearer TOKEN'.")] = None,
    allowed_host: Annotated[list[str] | None, typer.Option(
        help="A name this server is reached by, repeatable (Host-header allow-list against DNS rebinding; "
        "loopback names are always allowed, '*' allows any).")] = None,
    categories: Annotated[Path | None, typer.Option(help="Categories for /api/recognize.")] = None,
    upload_limit_mb: Annotated[float, typer.Option(help="Largest accepted upload.")] = 25,
    allow_private_urls: Annotated[bool, typer.Option(help="Let URL queries reach private addresses.")] = False,
    db: DbOption = None,
) -> None:
    """Serve the REST API (docs at /docs) and the web page on http://HOST:PORT/."""
    import ipaddress

    import uvicorn

    from lookalike.api import Index
    from lookalike.server.app import create_app, warm_up

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not token:
        raise LookalikeError(f"binding to {host} exposes the index to the network: pass --token (or set "
                             "LOOKALIKE_TOKEN), or keep the default --host 127.0.0.1")
    idx = Index.open(db=db, create=False)
    warm_up(idx)
    hosts = [*(allowed_host or []), *([] if host in ("0.0.0.0", "::") else [host])]
    if host in ("0.0.0.0", "::") and not allowed_host:
        errors.print("note: requests must name a loopback Host; add --allowed-host NAME for each name or address "
                     "other machines use to reach this server", highlight=False)
    app = create_app(idx, token=token, upload_limit=int(upload_limit_mb * 1024 * 1024),
                     categories=str(categories) if categories else None, allow_private_urls=allow_private_urls,
                     allowed_hosts=hosts)
    errors.print(f"lookalike: {idx.info().images} images with {idx.model_id}; open http://{host}:{port}/"
                 + ("#token=TOKEN (the page keeps it in memory only)" if token else ""), highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")


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
    import tempfile

    from lookalike.evaluate import (
        calibrated_thresholds,
        generate_copy_detection_set,
        load_disc21_set,
        markdown_table,
        store_thresholds,
        write_outputs,
    )
    from lookalike.moves import mark_output_folder

    mark_output_folder(out)  # never indexed, even when written inside a photo folder
    data = None
    if disc21:
        dataset = load_disc21_set(*disc21)
    elif originals is not None and hard:
        from lookalike.evalcopy import build_hard_set
        from lookalike.images import scan

        extra = sorted(f.path for f in scan(distractors).files) if distractors else []
        dataset = build_hard_set(sorted(f.path for f in scan(originals).files), out / "data", extra, seed=seed)
    elif originals is not None:
        chosen = [f.strip() for f in families.split(",")] if families else None
        data = out / "data" if keep_data else Path(tempfile.mkdtemp(prefix="lookalike-eval-"))
        dataset = generate_copy_detection_set(originals, data, seed=seed, families=chosen, distractors=distractors)
    else:
        raise LookalikeError("give ORIGINALS_DIR, or --disc21 QUERIES REFERENCES GROUND_TRUTH")
    errors.print(f"{len(dataset.references)} references, {len(dataset.queries)} queries "
                 f"({sum(t is None for t in dataset.truth)} negatives)", highlight=False)
    try:
        reports = _evaluate_models(dataset, models, verify)
    finally:
        if data is not None and not keep_data:
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
    from lookalike.thresholds import reset_calibration

    with Index.open(db=db, create=False) as idx:
        if reset:
            had = reset_calibration(idx.catalog, idx.model_id)
            errors.print(("forgot the calibrated threshold; " if had else "no calibrated threshold was stored; ")
                         + f"dupes uses {idx.threshold().describe()}", highlight=False)
            return
        if originals is None:
            raise LookalikeError("give ORIGINALS_DIR to calibrate on, or --reset")
        workdir = Path(tempfile.mkdtemp(prefix="lookalike-calibrate-"))
        try:
            with errors.status(f"calibrating {idx.model_id}: editing copies of {originals} and embedding them…"):
                used, report = measure(idx, originals, workdir)
        finally:
            if not keep:
                shutil.rmtree(workdir, ignore_errors=True)
    console.print(f"recall at 90% precision {report.recall_at_90_precision:.3f}, µAP {report.micro_ap:.3f}",
                  highlight=False)
    console.print(f"stored threshold {used.describe()}", highlight=False)
    if keep:
        errors.print(f"data set kept in {workdir}", highlight=False)


@app.command()
def info(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show the index: folder, model, dimension, counts, size on disk, last update."""
    import datetime

    from lookalike.api import Index

    with Index.open(db=db, create=False) as idx:
        details = idx.info()
    if as_json:
        print(json.dumps(details.as_dict()))
        return

    def when(stamp: float | None) -> str:
        return datetime.datetime.fromtimestamp(stamp).isoformat(" ", "seconds") if stamp else "never"

    table = Table(show_header=False, show_edge=False)
    for key, value in [
        ("folder", details.root), ("index", details.db), ("model", details.model), ("dimension", details.dim),
        ("images", details.images), ("skipped files", details.skipped),
        ("size on disk", f"{details.size_bytes / 1e6:.2f} MB"), ("vector store", details.store),
        ("search structure", details.search_structure or "built at the first search"),
        ("memory budget", details.settings.get("memory_budget") or "none"),
        ("created", when(details.created_at)), ("last update", when(details.updated_at)),
        *[(f"serves {role}", model) for role, model in (details.models or {}).get("serves", {}).items() if model],
        *[(f"vectors {model}", f"{n['images']} images, {n['variants']} variants")
          for model, n in (details.models or {}).get("vectors", {}).items()],
        ("dupes threshold", details.threshold["description"] if details.threshold else ""),
    ]:
        table.add_row(key, str(value))
    console.print(table)


if __name__ == "__main__":
    main()
