"""The FastAPI application behind `lookalike serve`.

The model is loaded once and kept warm; index operations are serialised by one lock (the model is the
bottleneck, and one SQLite connection is shared). The index is re-read whenever `lookalike index` changed it,
so new images appear without a restart.
"""

from __future__ import annotations

import hmac
import io
import threading
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from lookalike.api import Index
from lookalike.errors import ImageError, LookalikeError, ModalityError, QueryError
from lookalike.server.safety import DEFAULT_PIXEL_LIMIT, DEFAULT_UPLOAD_LIMIT, RequestRejected, fetch_url

STATIC = Path(__file__).parent / "static"


def create_app(index: Index, token: str | None = None, upload_limit: int = DEFAULT_UPLOAD_LIMIT,
               pixel_limit: int = DEFAULT_PIXEL_LIMIT, categories: str | None = None,
               allow_private_urls: bool = False) -> FastAPI:
    app = FastAPI(title="lookalike", version="0.1.0",
                  description="Search images by image or text, compare, find duplicates, recognise, cluster.")
    lock = threading.RLock()
    state: dict = {}

    def authorised(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or request.query_params.get(
            "token", "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong token: send 'Authorization: Bearer <token>'")

    api = [Depends(authorised)]

    @app.exception_handler(RequestRejected)
    def rejected(_: Request, exc: RequestRejected):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(ImageError)
    def bad_image(_: Request, exc: ImageError):
        status = 413 if str(exc).startswith("too large") else 415
        return JSONResponse({"detail": f"not a usable image: {exc}"}, status_code=status)

    @app.exception_handler(LookalikeError)
    def bad_request(_: Request, exc: LookalikeError):
        status = 422 if isinstance(exc, (ModalityError, QueryError)) else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    async def read_upload(upload: UploadFile) -> bytes:
        data = await upload.read(upload_limit + 1)
        if len(data) > upload_limit:
            raise RequestRejected(413, f"upload larger than {upload_limit:,} bytes")
        if not data:
            raise RequestRejected(415, "not a usable image: empty file (0 bytes)")
        return data

    def decode(data: bytes):
        from lookalike.images import load_image

        return load_image(data, pixel_limit=pixel_limit)

    def results(result) -> dict:
        payload = result.as_dict()
        for match in payload["results"]:
            match["thumbnail"] = f"/api/thumbnail/{match['id']}"
            match.pop("path")  # server paths are not the client's business
        return payload

    def search(k: int, min_score: float | None, image=None, text: str | None = None, exact: bool = False,
               verify: bool = False) -> dict:
        from lookalike.search import make_query

        query = make_query(image=image, text=[text] if text else None)
        with lock:
            return results(index.search_many([query], k=k, min_score=min_score, exact=exact, verify=verify)[0])

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/api/info", dependencies=api)
    def info() -> dict:
        with lock:
            details = index.info().as_dict()
        details["text_search"] = "text" in index.embedder.modalities
        details.pop("db")
        details.pop("root")
        return details

    @app.post("/api/search/image", dependencies=api)
    async def search_image(file: Annotated[UploadFile, File()], k: Annotated[int, Form(ge=1, le=500)] = 20,
                           min_score: Annotated[float | None, Form()] = None,
                           text: Annotated[str | None, Form()] = None,
                           verify: Annotated[bool, Form()] = False) -> dict:
        """Search by an uploaded image (optionally mixed with text terms, e.g. '-night'); `verify` puts copies
        proven by local features first, with the region they cover."""
        image = decode(await read_upload(file))
        result = search(k, min_score, image=image, text=text, verify=verify)
        result["query"] = file.filename or "upload"
        return result

    @app.get("/api/search/text", dependencies=api)
    def search_text(q: Annotated[str, Query(min_length=1, max_length=1000)],
                    k: Annotated[int, Query(ge=1, le=500)] = 20, min_score: float | None = None) -> dict:
        return search(k, min_score, text=q)

    @app.get("/api/search/url", dependencies=api)
    def search_url(url: Annotated[str, Query(max_length=4000)], k: Annotated[int, Query(ge=1, le=500)] = 20,
                   min_score: float | None = None, verify: bool = False) -> dict:
        image = decode(fetch_url(url, upload_limit, allow_private=allow_private_urls))
        result = search(k, min_score, image=image, verify=verify)
        result["query"] = url
        return result

    @app.get("/api/search/similar/{image_id}", dependencies=api)
    def more_like_this(image_id: int, k: Annotated[int, Query(ge=1, le=500)] = 20) -> dict:
        with lock:
            vector = index.catalog.vector_of(image_id)
            [result] = index.search_vectors(vector[None], [f"#{image_id}"], k=k)
        return results(result)

    @app.post("/api/compare", dependencies=api)
    async def compare(a: Annotated[UploadFile, File()], b: Annotated[UploadFile, File()]) -> dict:
        from lookalike.compare import compare_images

        first, second = decode(await read_upload(a)), decode(await read_upload(b))
        with lock:
            return compare_images(first, second, index.embedder).as_dict()

    @app.get("/api/dupes", dependencies=api)
    def dupes(threshold: float | None = None, verify: bool = False) -> dict:
        from lookalike.dupes import find_duplicates

        with lock:
            groups = find_duplicates(index, threshold=threshold, verify=verify)
        payload = []
        for group in groups:
            entry = group.as_dict()
            for member in [entry["keeper"], *entry["duplicates"]]:
                member["thumbnail"] = f"/api/thumbnail/{member['id']}"
                member.pop("path")
            payload.append(entry)
        return {"groups": payload}

    @app.get("/api/clusters", dependencies=api)
    def clusters(k: Annotated[int | None, Query(ge=1, le=500)] = None, method: str = "kmeans") -> dict:
        from lookalike.cluster import cluster_index, rows

        with lock:
            clustering = cluster_index(index, k=k, method=method)
            entries = rows(index, clustering)
        grouped: dict[int, list] = {}
        for entry in entries:
            grouped.setdefault(entry["cluster"], []).append(
                {"id": entry["id"], "relative_path": entry["relative_path"],
                 "thumbnail": f"/api/thumbnail/{entry['id']}"})
        return {"method": clustering.method, "k": clustering.k, "silhouette": clustering.silhouette,
                "clusters": [{"cluster": c, "images": grouped[c]} for c in sorted(grouped, key=lambda c: -len(
                    grouped[c]))]}

    @app.post("/api/recognize", dependencies=api)
    async def recognize(file: Annotated[UploadFile, File()], threshold: Annotated[float | None, Form()] = None) -> dict:
        from lookalike.recognize import load_categories

        if categories is None:
            raise RequestRejected(404, "no categories configured: start the server with --categories DIR")
        image = decode(await read_upload(file))
        with lock:
            if "categories" not in state:
                state["categories"] = load_categories(categories, index.embedder)
            vector = index.embedder.embed_images([image])
            [result] = state["categories"].recognize_vectors(vector, [file.filename or "upload"], threshold)
        return result.as_dict()

    @app.get("/api/thumbnail/{image_id}", dependencies=api)
    def thumbnail(image_id: int, size: Annotated[int, Query(ge=16, le=1024)] = 256) -> Response:
        """Thumbnails exist only for indexed images, looked up by id: no path ever comes from the client."""
        from lookalike.images import load_image

        with lock:
            paths = index.catalog.paths_for([image_id])
        if image_id not in paths:
            raise HTTPException(404, "no such image in the index")
        image = load_image(index.read(paths[image_id]), draft_size=size)
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=82)
        return Response(buffer.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "max-age=300"})

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def warm_up(index: Index) -> None:
    """Load the model and the search structure before the first request."""
    from PIL import Image

    index.embedder.embed_images([Image.new("RGB", (64, 64), "grey")])
    index.vectors()
