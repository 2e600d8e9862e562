"""`lookalike index`, `info` and `serve`: building the index, looking at it, serving it."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lookalike.cli.common import DbOption, JsonOption, ModelOption, app, console, errors, shown
from lookalike.errors import LookalikeError


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
    runtime: Annotated[str | None, typer.Option(
        help="How image models run (remembered by the index): auto (the fastest that keeps cosine ≥ 0.99 to "
        "fp32), torch, bf16, onnx, onnx-int8. Default: as stored, else auto.")] = None,
    engine: Annotated[str, typer.Option(help="Where to embed: local (this process) or ray.")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: start Ray here).")] = None,
    shards: Annotated[str | None, typer.Option("--shards", "--ray-shards", help="--engine ray: where Parquet "
        "shards go (resumable): a directory, or s3://bucket/prefix (any fsspec URL) that every Ray worker can "
        "write. Default: next to the index.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Index a folder (again): only new or changed files are embedded; moved files keep their vectors."""
    from lookalike.api import Index

    variants = None if copy_variants is None else [v for v in copy_variants.split(",") if v.strip() not in ("", "none")]
    with Index.open(photos_dir, db=db, model=model, reindex=reindex, store=store, memory_budget=memory_budget,
                    copy_extras=variants, runtime=runtime) as idx:
        runner = _engine(engine, idx, ray_address, shards, batch_size)
        with _embedding_progress(disable=as_json) as progress:
            report = idx.update(progress=progress, include_hidden=include_hidden, batch_size=batch_size,
                                engine=runner, on_wait=_waiting)
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


def _engine(engine: str, idx, ray_address: str | None, shards: str | None, batch_size: int):
    """None (embed in this process) or a Ray engine."""
    if engine == "local":
        return None
    if engine != "ray":
        raise LookalikeError(f"unknown engine '{engine}': choose local or ray")
    from lookalike.distributed import RayEngine

    return RayEngine(shards or idx.db_file.parent / f"{idx.db_file.stem}.shards", address=ray_address,
                     batch_size=batch_size)


@contextlib.contextmanager
def _embedding_progress(disable: bool):
    """A progress bar on stderr, and the `progress(done, total)` callback that drives it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeRemainingColumn())
    # Redrawn by each callback, not by Rich's refresh thread: indexing forks its decoding processes only while
    # no other thread runs (lookalike.preparing.worker_processes).
    with Progress(*columns, console=errors, transient=True, disable=disable, auto_refresh=False) as bar:
        task = bar.add_task("embed", total=None, rate="")

        def progress(done: int, total: int) -> None:
            speed = bar.tasks[0].speed
            bar.update(task, completed=done, total=total, rate=f"{speed:.1f} files/s" if speed else "", refresh=True)

        yield progress


def _waiting(holder: str) -> None:
    errors.print(f"waiting: this index is being updated by {shown(holder)}", highlight=False)


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
        ("runtime", details.settings.get("runtime", "auto")),
        ("created", when(details.created_at)), ("last update", when(details.updated_at)),
        *[(f"serves {role}", model) for role, model in (details.models or {}).get("serves", {}).items() if model],
        *[(f"vectors {model}", f"{n['images']} images, {n['variants']} variants")
          for model, n in (details.models or {}).get("vectors", {}).items()],
        ("dupes threshold", details.threshold["description"] if details.threshold else ""),
    ]:
        table.add_row(key, str(value))
    console.print(table)


@app.command()
def models(as_json: JsonOption = False) -> None:
    """The models lookalike knows: what each is for, and its default threshold per verb (and where from)."""
    from lookalike.models.specs import FALLBACK, SPECS

    if as_json:
        print(json.dumps([{"name": s.name, "id": s.id, "aliases": list(s.aliases), "modalities": list(s.modalities),
                           "summary": s.summary, "preprocessing": s.preprocessing, "copy_detection": s.copy_detection,
                           "thresholds": vars(s.thresholds)} for s in SPECS]))
        return
    table = Table(show_edge=False)
    for column in ("model", "for", "dupes", "recognize: examples", "recognize: prompts"):
        table.add_column(column)
    for spec in SPECS:
        values = spec.thresholds
        dupes = f"{values.dupes:.4g}" + (f", copy score {values.copy_score:.4g}" if values.copy_score else "")
        table.add_row(spec.name, spec.summary, dupes, f"{values.examples:.4g}",
                      "" if values.prompts is None else f"{values.prompts:.4g}")
    console.print(table)
    console.print("Any other Hugging Face id or checkpoint folder works too, with generic thresholds "
                  f"({FALLBACK.dupes}, {FALLBACK.examples}, {FALLBACK.prompts}). `lookalike calibrate` measures a "
                  "dupes threshold on your own images; `lookalike info` shows the one in use.", highlight=False)
