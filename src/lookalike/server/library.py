"""Routes for the web app's collection views: a paged gallery of the whole collection, its folders, and
applying (and undoing) a duplicate review by moving files to the trash folder (`lookalike/trash.py`).

Applying re-indexes the folder afterwards (as a background job the page shows progress for), so moved files
leave search results and the gallery at once; undo does the same in reverse.
"""

from __future__ import annotations

import posixpath
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from lookalike.names import from_db, json_text
from lookalike.server import schemas
from lookalike.server.safety import RequestRejected

Sort = Literal["date", "date-asc", "name", "folder", "size"]
SORT_KEYS = {
    "date": lambda r: (-r[3], r[1]),
    "date-asc": lambda r: (r[3], r[1]),
    "name": lambda r: (posixpath.basename(r[1]).lower(), r[1]),
    "folder": lambda r: (posixpath.dirname(r[1]).lower(), posixpath.basename(r[1]).lower()),
    "size": lambda r: (-r[2], r[1]),
}


def _rows(ctx) -> list[tuple]:
    """(id, path, size, mtime_ns, width, height) of every image."""
    with ctx.lock:
        cursor = ctx.index.catalog.conn.execute("SELECT id, path, size, mtime_ns, width, height FROM images")
        return [(row[0], from_db(row[1]), *row[2:]) for row in cursor]


def _listing(ctx, sort: str, folder: str | None) -> list[tuple]:
    """The sorted (and filtered) collection, kept until the catalog changes: reading and sorting 200,000 rows
    takes a second or two, so it is done once per index change and sort, and every page is then a slice."""
    with ctx.lock:
        version = (ctx.index.catalog.generation(), ctx.index.catalog.epoch())
    cache = ctx.state.setdefault("browse", {})
    key = (version, sort, folder)
    if key not in cache:
        rows = _rows(ctx)
        if folder is not None:
            rows = [r for r in rows if posixpath.dirname(r[1]) == folder]
        rows.sort(key=SORT_KEYS[sort])
        for old in [k for k in list(cache) if k[0] != version] + list(cache)[:-3]:
            cache.pop(old, None)
        cache[key] = rows
    return cache[key]


def browse_page(ctx, offset: int, limit: int, sort: str, folder: str | None) -> dict:
    rows = _listing(ctx, sort, folder)
    return {"total": len(rows), "offset": offset, "limit": limit, "sort": sort, "folder": folder,
            "images": [image_entry(*row) for row in rows[offset:offset + limit]]}


def image_entry(image_id: int, path: str, size: int, mtime_ns: int, width: int, height: int) -> dict:
    return {"id": image_id, "relative_path": json_text(path), "thumbnail": f"/api/thumbnail/{image_id}",
            "width": width, "height": height, "size": size, "mtime": mtime_ns / 1e9,
            "folder": json_text(posixpath.dirname(path))}


def folders(ctx) -> dict:
    counts: dict[str, int] = {}
    for row in _listing(ctx, "folder", None):
        folder = json_text(posixpath.dirname(row[1]))
        counts[folder] = counts.get(folder, 0) + 1
    return {"folders": [{"folder": f, "images": n} for f, n in sorted(counts.items())]}


def _local_root(ctx) -> str:
    if not getattr(ctx.index.source, "is_local", False):
        raise RequestRejected(400, "moving files needs a local folder; this index reads "
                                   f"{ctx.index.source.location}")
    return ctx.index.source.location


def apply_moves(ctx, plan: schemas.MovePlan, progress) -> dict:
    """Move the chosen files to the trash, then re-index so they leave the results."""
    from lookalike.trash import move_to_trash

    root = _local_root(ctx)
    if set(plan.move) & set(plan.keep):
        raise RequestRejected(400, "an image cannot be both kept and moved")
    with ctx.lock:
        paths = ctx.index.catalog.paths_for([*plan.move, *plan.keep])
    unknown = [i for i in [*plan.move, *plan.keep] if i not in paths]
    if unknown:
        raise RequestRejected(404, f"no image with id {unknown[0]} in the index; reload the review")
    batch, moved = move_to_trash(root, [paths[i] for i in plan.move], [paths[i] for i in plan.keep])
    refresh(ctx, progress)
    ids = {paths[i]: i for i in plan.move}
    return {"batch": batch, "manifest": f".lookalike-trash/{batch}/manifest.json",
            "moved": [{"id": ids[m.relative_path], **{k: json_text(v) for k, v in m.as_dict().items()}}
                      for m in moved]}


def undo_moves(ctx, batch: str, progress) -> dict:
    from lookalike.trash import undo

    restored = undo(_local_root(ctx), batch)
    refresh(ctx, progress)
    return {"batch": batch, "restored": [json_text(p) for p in restored]}


def refresh(ctx, progress=None) -> dict:
    """Re-scan the folder and index what changed, on a catalog connection of its own and never under the
    server's lock: searches keep answering from the committed state (SQLite WAL) until each batch commits, and
    the search structure reloads when the catalog's generation moves."""
    with ctx.reader() as writer:
        report = writer.update(progress=progress).as_dict()
    report["skipped"] = [{**skip, "path": json_text(skip["path"])} for skip in report["skipped"]]
    return report


def library_routes(ctx) -> APIRouter:
    router = APIRouter()

    @router.get("/api/browse", response_model=schemas.Browse)
    async def browse(offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
                     limit: Annotated[int, Query(ge=1, le=500)] = 60, sort: Sort = "date",
                     folder: Annotated[str | None, Query(max_length=4000)] = None) -> dict:
        """One page of the whole collection, sorted by date (newest first), name, folder or size; `folder`
        ('' for the top folder) keeps only the images directly in it."""
        return await ctx.pool.run(browse_page, ctx, offset, limit, sort, folder)

    @router.get("/api/folders", response_model=schemas.Folders)
    async def list_folders() -> dict:
        """Every folder holding indexed images, with how many."""
        return await ctx.pool.run(folders, ctx)

    @router.post("/api/dupes/apply", status_code=202, response_model=schemas.Job)
    async def apply(plan: schemas.MovePlan) -> JSONResponse:
        """Move the `move` images to `<folder>/.lookalike-trash/<batch>/` (never deleted) with a manifest,
        then re-index: a job whose result gives the batch id for /api/dupes/undo."""
        if not plan.move:
            raise RequestRejected(400, "nothing to move: mark at least one image 'move'")
        job = ctx.jobs.start("apply", lambda progress: apply_moves(ctx, plan, progress))
        return _accepted(job)

    @router.post("/api/dupes/undo/{batch}", status_code=202, response_model=schemas.Job)
    async def undo(batch: Annotated[str, Path(pattern=r"^[0-9]{8}T[0-9]{6}-[0-9]{6}$")]) -> JSONResponse:
        """Put back every file of a batch moved by /api/dupes/apply, then re-index."""
        job = ctx.jobs.start("undo", lambda progress: undo_moves(ctx, batch, progress))
        return _accepted(job)

    return router


def _accepted(job) -> JSONResponse:
    return JSONResponse(job.as_dict(), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})
