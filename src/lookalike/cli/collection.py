"""`lookalike recognize` and `cluster`: categories by example or prompt, and the collection's clusters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lookalike.cli.common import DbOption, JsonOption, ModelOption, app, console, embedder_for, errors, json_line, shown
from lookalike.errors import LookalikeError
from lookalike.models.specs import threshold_help


@app.command()
def recognize(
    queries: Annotated[list[Path], typer.Argument(help="Images to recognise.")],
    categories: Annotated[Path, typer.Option(
        "--categories", "-c", help="Folder of category subfolders with example images, or a YAML/CSV of text "
        "prompts per category (CLIP zero-shot).")],
    threshold: Annotated[float | None, typer.Option(
        help="Below this cosine the answer is 'unknown'. Default per category (categories.yaml) or per model, "
        f"with example images: {threshold_help('examples')}. With text prompts: "
        f"{threshold_help('prompts')}.")] = None,
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
    category_set = load_categories(categories, embedder_for(model, db))
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
        ids, matrix = idx.embeddings()
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
