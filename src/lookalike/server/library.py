"""Routes for the web app's collection views: a paged gallery of the whole collection and its folders (the
duplicate review's routes are in `review.py`)."""

from __future__ import annotations

import posixpath
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from lookalike.names import json_text
from lookalike.server import schemas

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
        images = ctx.index.images()
    return [(i.id, i.path, i.size, i.mtime_ns, i.width, i.height) for i in images]


def _listing(ctx, sort: str, folder: str | None) -> list[tuple]:
    """The sorted (and filtered) collection, kept until the catalog changes: reading and sorting 200,000 rows
    takes a second or two, so it is done once per index change and sort, and every page is then a slice."""
    with ctx.lock:
        version = ctx.index.version()
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

    return router

