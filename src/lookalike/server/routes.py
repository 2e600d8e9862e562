"""The API routes. Each parses its request on the event loop and hands the work to the worker pool; the
server's lock guards only the shared catalog connection and the search structure (milliseconds), never
decoding or the model, so uploads run side by side."""

from __future__ import annotations

import posixpath
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Path, Query, UploadFile
from fastapi.responses import Response

from lookalike.api import Index, SearchResult
from lookalike.errors import ModalityError, QueryError
from lookalike.names import json_text
from lookalike.rerank import pool_size, verify_matches
from lookalike.server import schemas
from lookalike.server.safety import RequestRejected, fetch
from lookalike.server.work import BatchedEmbedder, Jobs, WorkerPool

ImageId = Annotated[int, Path(ge=0, le=2**63 - 1, description="An image id from a search result.")]
TopK = Annotated[int, Query(ge=1, le=500)]
COPIES = ("Copy lookup: originals of an edited copy (resized, cropped, flipped, turned), found with the index's "
          "copy model; each result has a `copy_score` (its cosine minus the query's background similarity).")
JobId = Annotated[str, Path(pattern="^[0-9a-f]{32}$", description="A job id from a 202 answer.")]
Score = Annotated[float | None, Query(ge=-1.0, le=1.0, description="A cosine similarity in [-1, 1].")]


@dataclass
class Context:
    index: Index
    pool: WorkerPool
    jobs: Jobs
    upload_limit: int
    pixel_limit: int
    categories: str | None = None
    allow_private_urls: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)
    state: dict = field(default_factory=dict)
    _model: BatchedEmbedder | None = field(default=None, init=False, repr=False)

    @property
    def model(self) -> BatchedEmbedder:
        """The index's embedder behind model threads that batch concurrent requests (see `work.py`)."""
        with self.lock:
            self._model = self._model or BatchedEmbedder(self.index.embedder)
            return self._model

    def close(self) -> None:
        self.pool.shutdown()
        self.jobs.shutdown()
        if self._model is not None:
            self._model.batcher.shutdown()

    def decode(self, data: bytes, draft: bool):
        """An uploaded image; with `draft`, decoded as the indexer decodes for the model (JPEG's draft scale, the
        box shrink): an indexed file uploaded is its own first hit at 1.0, and decoding and resizing a photo cost
        a fraction. Verification and `compare` need every pixel."""
        from lookalike.images import load_image

        return load_image(data, draft_size=self.model.draft_size if draft else None, pixel_limit=self.pixel_limit)

    def search(self, k: int, min_score: float | None, image=None, text: str | None = None,
               verify: bool = False, copies: bool = False) -> dict:
        """Embed outside the lock (the slow part, thread-safe), search under it; verification (local features on
        a wider pool of candidates, files read by path) runs outside it too. `copies`: `Index.find_copies`."""
        from lookalike.search import make_query, query_vector

        if copies:
            return self.copies(k, min_score, image, text, verify)

        query = make_query(image=image, text=[text] if text else None)
        if "text" in query.modalities and "text" not in self.model.modalities:
            raise ModalityError(f"this index uses {self.index.model_id}, which embeds images only, so it cannot "
                                "search by text; re-index with a text-capable model (--model clip --reindex)")
        vector = query_vector(self.model, query)
        if verify and image is None:
            raise QueryError("verify needs a query image")
        with self.lock:
            [result] = self.index.search_vectors(vector[None], [query.label], k=pool_size(k) if verify else k,
                                                 min_score=min_score)
        if verify:
            result = SearchResult(result.query, verify_matches(self.index, image, result.matches, k),
                                  result.method + "+verify")
        return results(result)

    def copies(self, k: int, min_score: float | None, image, text: str | None, verify: bool) -> dict:
        """Originals of an edited copy (the copy model, with flips and turns), each with its copy score."""
        if image is None or text:
            raise QueryError("copies=true needs a query image and no text")
        if verify:
            raise QueryError("copies=true and verify=true cannot be combined: choose one")
        with self.lock:  # the copy model runs beside the batched main model; its vectors are cached per index
            [result] = self.index.find_copies([image], k=k, min_score=min_score)
        return results(result)

    @contextmanager
    def reader(self):
        """An Index on its own catalog connection, for jobs that must not hold the server's lock (also writers)."""
        view = self.index.handle()
        try:
            yield view
        finally:
            view.close()


def results(result) -> dict:
    payload = result.as_dict()
    for match in payload["results"]:
        public(match)
    return payload


def public(member: dict) -> dict:
    """Server paths are not the client's business; names are made valid UTF-8 for JSON."""
    member.pop("path", None)
    member["relative_path"] = json_text(member["relative_path"])
    member["thumbnail"] = f"/api/thumbnail/{member['id']}"
    return member


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise RequestRejected(413, f"upload larger than {limit:,} bytes")
    if not data:
        raise RequestRejected(415, "not a usable image: empty file (0 bytes)")
    return data


def search_routes(ctx: Context) -> APIRouter:
    router = APIRouter()

    @router.post("/api/search/image", response_model=schemas.SearchResults)
    async def search_image(file: Annotated[UploadFile, File()], k: Annotated[int, Form(ge=1, le=500)] = 20,
                           min_score: Annotated[float | None, Form(ge=-1.0, le=1.0)] = None,
                           text: Annotated[str | None, Form(max_length=1000)] = None,
                           verify: Annotated[bool, Form()] = False,
                           copies: Annotated[bool, Form(description=COPIES)] = False) -> dict:
        """Search by an uploaded image (optionally mixed with text terms, e.g. '-night'); `verify` puts copies
        proven by local features first, with the region they cover; `copies` looks up originals of a copy."""
        data = await read_upload(file, ctx.upload_limit)
        result = await ctx.pool.run(lambda: ctx.search(k, min_score, image=ctx.decode(data, draft=not verify),
                                                       text=text, verify=verify, copies=copies))
        result["query"] = json_text(file.filename or "upload")
        return result

    @router.get("/api/search/text", response_model=schemas.SearchResults)
    async def search_text(q: Annotated[str, Query(min_length=1, max_length=1000)], k: TopK = 20,
                          min_score: Score = None) -> dict:
        return await ctx.pool.run(lambda: ctx.search(k, min_score, text=q))

    @router.get("/api/search/url", response_model=schemas.SearchResults)
    async def search_url(url: Annotated[str, Query(max_length=4000)], k: TopK = 20, min_score: Score = None,
                         verify: bool = False, copies: Annotated[bool, Query(description=COPIES)] = False) -> dict:
        """Search by the image at a URL (http/https, public addresses only); `verify` and `copies` as for an
        upload."""
        data = await fetch(url, ctx.upload_limit, allow_private=ctx.allow_private_urls)
        result = await ctx.pool.run(lambda: ctx.search(k, min_score, image=ctx.decode(data, draft=not verify),
                                                       verify=verify, copies=copies))
        result["query"] = url
        return result

    @router.get("/api/search/similar/{image_id}", response_model=schemas.SearchResults)
    async def more_like_this(image_id: ImageId, k: TopK = 20) -> dict:
        """More like this: the images nearest an indexed one (itself first); `query` is its file name."""
        def work() -> dict:
            with ctx.lock:
                found = ctx.index.similar(image_id, k=k)  # NotFoundError: 404
            return {**results(found), "query": json_text(posixpath.basename(found.query))}

        return await ctx.pool.run(work)

    @router.post("/api/compare", response_model=schemas.Comparison)
    async def compare(a: Annotated[UploadFile, File()], b: Annotated[UploadFile, File()]) -> dict:
        from lookalike.compare import compare_images

        first, second = await read_upload(a, ctx.upload_limit), await read_upload(b, ctx.upload_limit)
        return await ctx.pool.run(lambda: compare_images(ctx.decode(first, draft=False),
                                                         ctx.decode(second, draft=False), ctx.model).as_dict())

    @router.post("/api/recognize", response_model=schemas.Recognition)
    async def recognize(file: Annotated[UploadFile, File()],
                        threshold: Annotated[float | None, Form(ge=-1.0, le=1.0)] = None) -> dict:
        if ctx.categories is None:
            raise RequestRejected(404, "no categories configured: start the server with --categories DIR")
        data = await read_upload(file, ctx.upload_limit)
        return await ctx.pool.run(_recognize, ctx, data, json_text(file.filename or "upload"), threshold)

    return router


def collection_routes(ctx: Context) -> APIRouter:
    router = APIRouter()

    @router.get("/api/info", response_model=schemas.Info)
    async def info() -> dict:
        def work() -> dict:
            with ctx.lock:
                details = ctx.index.info().as_dict()
            details["text_search"] = "text" in ctx.index.embedder.modalities
            details.pop("db")
            details.pop("root")
            return details

        return await ctx.pool.run(work)

    @router.get("/api/jobs/{job_id}", response_model=schemas.Job)
    async def job(job_id: JobId) -> dict:
        """A background job: status, progress, and its result once done."""
        return ctx.jobs.get(job_id).as_dict()

    @router.post("/api/jobs/{job_id}/cancel", response_model=schemas.Job)
    async def cancel_job(job_id: JobId) -> dict:
        """Ask a job to stop: a queued one never starts; a running one stops at its next step (an apply between
        two moves, its result listing the moves made, which undo puts back); a finished one is unchanged."""
        return ctx.jobs.cancel(job_id).as_dict()

    @router.get("/api/clusters", response_model=schemas.Clusters)
    async def clusters(k: Annotated[int | None, Query(ge=2, le=500)] = None,
                       method: Literal["kmeans", "hdbscan"] = "kmeans") -> dict:
        return await ctx.pool.run(lambda: _clusters(ctx, k, method))

    @router.get("/api/thumbnail/{image_id}", response_class=Response,
                responses={200: {"content": {"image/jpeg": {}}, "description": "a JPEG thumbnail"}})
    async def thumbnail(image_id: ImageId, size: Annotated[int, Query(ge=16, le=2048)] = 256) -> Response:
        """Thumbnails exist only for indexed images, looked up by id: no path ever comes from the client."""
        return await ctx.pool.run(_thumbnail, ctx, image_id, size)

    return router


def _recognize(ctx: Context, data: bytes, name: str, threshold: float | None) -> dict:
    from lookalike.recognize import load_categories

    with ctx.lock:
        if "categories" not in ctx.state:
            ctx.state["categories"] = load_categories(str(ctx.categories), ctx.model)
    image = ctx.decode(data, draft=True)
    vector = ctx.model.embed_images([image])
    return ctx.state["categories"].recognize_vectors(vector, [name], threshold)[0].as_dict()


def _clusters(ctx: Context, k: int | None, method: str) -> dict:
    from lookalike.cluster import cluster_index, rows

    with ctx.lock:
        clustering = cluster_index(ctx.index, k=k, method=method)
        entries = rows(ctx.index, clustering)
    grouped: dict[int, list] = {}
    for entry in entries:
        grouped.setdefault(entry["cluster"], []).append(public(
            {"id": entry["id"], "relative_path": entry["relative_path"]}))
    return {"method": clustering.method, "k": clustering.k, "silhouette": clustering.silhouette,
            "clusters": [{"cluster": c, "images": grouped[c]} for c in sorted(grouped, key=lambda c: -len(
                grouped[c]))]}


def _thumbnail(ctx: Context, image_id: int, size: int) -> Response:
    from lookalike.server.thumbs import thumbnail

    data, cached = thumbnail(ctx.index, image_id, size, ctx.lock)  # NotFoundError: 404
    return Response(data, media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=300", "X-Thumbnail-Cache": "hit" if cached else "miss"})
