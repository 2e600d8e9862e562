"""Routes of the web app's duplicate review: the groups (with local-feature verification, a cancellable job with
progress), applying the person's keep/move choices by moving files to the trash folder (`lookalike/trash.py`),
and undoing any move manifest inside the folder, the CLI's `dupes --move-to` ones included.

Applying and undoing re-index the folder afterwards (in the same job), so moved files leave search results and
the gallery at once. A cancelled apply stops between two moves; the moves made are re-indexed and returned with
their manifest, which undo puts back like any other.
"""

from __future__ import annotations

import posixpath
from pathlib import PurePosixPath

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from lookalike.names import json_text
from lookalike.server import schemas
from lookalike.server.routes import Score, public
from lookalike.server.safety import RequestRejected
from lookalike.server.work import JobCancelled, Reporter


def dupes_payload(ctx, threshold: float | None, verify: bool, progress=None) -> dict:
    from lookalike.dupes import find_duplicates

    if verify:  # minutes: on a connection of its own, never under the lock
        with ctx.reader() as view:
            groups = find_duplicates(view, threshold=threshold, verify=True, progress=progress)
    else:
        with ctx.lock:
            groups = find_duplicates(ctx.index, threshold=threshold)
    payload = []
    for group in groups:
        entry = group.as_dict()
        for member, described in zip(group.members, [entry["keeper"], *entry["duplicates"]], strict=True):
            described.setdefault("mtime", member.mtime_ns / 1e9)
            described.setdefault("folder", json_text(posixpath.dirname(member.relative_path)))
            if described.get("region"):
                described["region"]["in"] = json_text(described["region"]["in"])
            public(described)
        payload.append(entry)
    return {"groups": payload, **threshold_in_use(ctx, threshold)}


def threshold_in_use(ctx, asked: float | None) -> dict:
    """The threshold the groups used, and where it came from (the page shows both)."""
    if asked is not None:
        return {"threshold": asked, "threshold_source": "set in the request"}
    with ctx.lock:
        used = ctx.index.threshold()
    return {"threshold": used.value, "threshold_source": used.origin()}


def _local_root(ctx) -> str:
    if not getattr(ctx.index.source, "is_local", False):
        raise RequestRejected(400, "moving files needs a local folder; this index reads "
                                   f"{ctx.index.source.location}")
    return ctx.index.source.location


def apply_moves(ctx, plan: schemas.MovePlan, progress: Reporter) -> dict:
    """Move the chosen files to the trash (stopping between moves if cancelled), then re-index."""
    from lookalike.trash import move_to_trash

    root = _local_root(ctx)
    if set(plan.move) & set(plan.keep):
        raise RequestRejected(400, "an image cannot be both kept and moved")
    with ctx.lock:
        paths = ctx.index.paths([*plan.move, *plan.keep])
    unknown = [i for i in [*plan.move, *plan.keep] if i not in paths]
    if unknown:
        raise RequestRejected(404, f"no image with id {unknown[0]} in the index; reload the review")
    progress.report(0, len(plan.move), "moving files")
    manifest, moved = move_to_trash(root, [paths[i] for i in plan.move], progress=progress.report,
                                    stop=lambda: progress.cancelled)
    _reindex(ctx, progress)
    ids = {paths[i]: i for i in plan.move}
    result = {"batch": PurePosixPath(manifest).parent.name, "manifest": json_text(manifest),
              "moved": [{"id": ids[m.relative_path], **{k: json_text(v) for k, v in m.as_dict().items()}}
                        for m in moved]}
    if len(moved) < len(plan.move):
        raise JobCancelled(result)
    return result


def undo_manifest(ctx, manifest: str, progress: Reporter) -> dict:
    from lookalike.trash import undo

    progress.report(0, None, "putting files back")
    restored = undo(_local_root(ctx), manifest, progress=progress.report, stop=lambda: progress.cancelled)
    _reindex(ctx, progress)
    result = {"manifest": manifest, "restored": [json_text(p) for p in restored]}
    if progress.cancelled:
        raise JobCancelled(result)
    return result


def _reindex(ctx, progress: Reporter) -> None:
    """Not cancellable: the index must follow the files, whatever was moved."""
    from lookalike.server.library import refresh

    progress.report(0, None, "updating the index")
    refresh(ctx, progress.report)  # on its own catalog connection: searches go on meanwhile


def review_routes(ctx) -> APIRouter:
    router = APIRouter()

    @router.get("/api/dupes", response_model=schemas.Dupes,
                responses={202: {"model": schemas.Job, "description": "with verify=true: a job to poll at its url"}})
    async def dupes(threshold: Score = None, verify: bool = False) -> dict | JSONResponse:
        """Duplicate groups. With `verify=true` (local features: minutes on large collections) the answer is a
        background job (202) whose `url` gives its progress (pairs verified) and, when done, the groups; verified
        copies carry `region`, the quadrilateral of the image `in` that the other covers, in its pixels."""
        if verify:
            job = ctx.jobs.start("dupes", lambda progress: dupes_payload(ctx, threshold, True, progress),
                                 key=("dupes", threshold))
            return accepted(job)
        return await ctx.pool.run(lambda: dupes_payload(ctx, threshold, False))

    @router.post("/api/dupes/apply", status_code=202, response_model=schemas.Job)
    async def apply(plan: schemas.MovePlan) -> JSONResponse:
        """Move the `move` images to `<folder>/.lookalike-trash/<batch>/` (never deleted) with a move manifest
        (the CLI's format: `lookalike dupes --undo MANIFEST` undoes it too), then re-index: a job whose result
        gives the manifest for /api/dupes/undo. Cancelled, it stops between moves and returns those made."""
        if not plan.move:
            raise RequestRejected(400, "nothing to move: mark at least one image 'move'")
        return accepted(ctx.jobs.start("apply", lambda progress: apply_moves(ctx, plan, progress)))

    @router.post("/api/dupes/undo", status_code=202, response_model=schemas.Job)
    async def undo(request: schemas.UndoRequest) -> JSONResponse:
        """Put back every file a move manifest inside the folder records (from /api/dupes/apply or the CLI's
        `dupes --move-to`), then re-index."""
        return accepted(ctx.jobs.start("undo", lambda progress: undo_manifest(ctx, request.manifest, progress)))

    @router.get("/api/dupes/manifests", response_model=schemas.Manifests)
    async def manifests() -> dict:
        """Move manifests in the folder's trash with files not yet put back, newest first."""
        from lookalike.trash import manifests as pending

        return {"manifests": await ctx.pool.run(lambda: [{**m, "manifest": json_text(m["manifest"])}
                                                          for m in pending(_local_root(ctx))])}

    return router


def accepted(job) -> JSONResponse:
    return JSONResponse(job.as_dict(), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})

