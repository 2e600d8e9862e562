"""The FastAPI application behind `lookalike serve`.

The model is loaded once and kept warm. Requests pass the guard (`guard.py`: Host/Origin, token, body size)
before anything reads their body; routes (`routes.py`) run their work in a bounded pool (`work.py`). The
index is re-read whenever `lookalike index` changed it, so new images appear without a restart;
`POST /api/index/refresh` re-scans the folder as a background job while searches go on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from lookalike.api import Index
from lookalike.errors import ImageError, LookalikeError
from lookalike.server import schemas
from lookalike.server.docs import add_offline_docs
from lookalike.server.guard import B64TOKEN, LOOPBACK_NAMES, Guard, GuardSettings
from lookalike.server.library import library_routes
from lookalike.server.library import refresh as refresh_index
from lookalike.server.review import review_routes
from lookalike.server.routes import Context, collection_routes, search_routes
from lookalike.server.safety import DEFAULT_PIXEL_LIMIT, DEFAULT_UPLOAD_LIMIT, RequestRejected
from lookalike.server.work import Jobs, WorkerPool

STATIC = Path(__file__).parent / "static"


class Problem(BaseModel):
    """Every error answer: one readable line saying what went wrong and what to do next."""

    detail: str = Field(description="What went wrong, and what to do next.")


class InvalidInput(BaseModel):
    """422: a parameter out of range (`detail` lists them, FastAPI's format) or a query the model cannot
    answer (`detail` is a sentence)."""

    detail: str | list[dict] = Field(description="A sentence, or one entry per invalid parameter.")


ERRORS: dict = {
    400: {"model": Problem, "description": "Malformed request, or a URL that could not be downloaded."},
    401: {"model": Problem, "description": "Missing or wrong token (servers started with --token)."},
    403: {"model": Problem, "description": "Cross-site request, or a URL to a private address."},
    404: {"model": Problem, "description": "No such image, job, or no categories configured."},
    413: {"model": Problem, "description": "Upload, download or image (pixels) over the limit."},
    415: {"model": Problem, "description": "Not a usable image (empty, truncated, unknown format)."},
    421: {"model": Problem, "description": "Host header not served here (DNS-rebinding guard)."},
    422: {"model": InvalidInput, "description": "A parameter out of range, or text on an image-only model."},
    503: {"model": Problem, "description": "Busy: retry after the Retry-After header's seconds."},
}


class SafeJSONResponse(JSONResponse):
    """JSON that is always valid UTF-8: a string with an undecodable name is sent with \\u escapes."""

    def render(self, content) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, separators=(",", ":")).encode()


def create_app(index: Index, token: str | None = None, upload_limit: int = DEFAULT_UPLOAD_LIMIT,
               pixel_limit: int = DEFAULT_PIXEL_LIMIT, categories: str | None = None,
               allow_private_urls: bool = False, allowed_hosts: Iterable[str] = (),
               workers: int | None = None) -> FastAPI:
    if token is not None and not B64TOKEN.fullmatch(token):
        raise LookalikeError("the token may hold only letters, digits and - . _ ~ + / (RFC 6750's b64token)")
    ctx = Context(index, WorkerPool(workers), Jobs(), upload_limit, pixel_limit, categories, allow_private_urls)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        ctx.close()

    app = FastAPI(title="lookalike", version="0.1.0", lifespan=lifespan, default_response_class=SafeJSONResponse,
                  docs_url=None, redoc_url=None,
                  description="Search images by image or text, compare, find duplicates, recognise, cluster. "
                  "Errors answer {\"detail\": \"...\"}; with --token, send 'Authorization: Bearer TOKEN'.")
    hosts = frozenset(LOOPBACK_NAMES | {h.lower().strip("[]") for h in allowed_hosts})
    app.add_middleware(Guard, settings=GuardSettings(token, hosts, upload_limit))
    _error_handlers(app)
    security = [_bearer_scheme()] if token else []
    for router in (search_routes(ctx), collection_routes(ctx), library_routes(ctx), review_routes(ctx),
                   _refresh_route(ctx)):
        app.include_router(router, responses=ERRORS, dependencies=security)
    add_offline_docs(app)

    @app.get("/api/health", response_model=schemas.Health)
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Referrer-Policy": "no-referrer"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _refresh_route(ctx: Context) -> APIRouter:
    router = APIRouter()

    @router.post("/api/index/refresh", status_code=202, response_model=schemas.Job)
    async def refresh() -> JSONResponse:
        """Re-scan the folder and index new, changed and removed files: a background job (poll its `url` for
        progress and the counts); searches keep answering from the previous state until it commits."""
        job = ctx.jobs.start("refresh", lambda progress: refresh_index(ctx, progress), key="refresh")
        return JSONResponse(job.as_dict(), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})

    return router


def _bearer_scheme():
    """Documents the token in the OpenAPI schema; the guard has already checked it."""
    from fastapi import Security

    return Security(HTTPBearer(auto_error=False))


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestRejected)
    def rejected(_: Request, exc: RequestRejected):
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return SafeJSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(ImageError)
    def bad_image(_: Request, exc: ImageError):
        return SafeJSONResponse({"detail": f"not a usable image: {exc}"}, status_code=exc.http_status)

    @app.exception_handler(LookalikeError)
    def bad_request(_: Request, exc: LookalikeError):
        return SafeJSONResponse({"detail": str(exc)}, status_code=exc.http_status)


def warm_up(index: Index) -> None:
    """Load the model and the search structure before the first request. The warm-up batch is large enough for
    the ONNX session to pre-pack its weights (models/runtime.py: ≈ 15 % throughput), as the model thread's
    batches under load would otherwise make it re-open then."""
    from PIL import Image

    from lookalike.memory import return_large_buffers_to_the_os
    from lookalike.models.runtime import PREPACK_FROM

    return_large_buffers_to_the_os()  # uploads decode in several threads: their buffers go back after each
    index.embedder.embed_images([Image.new("RGB", (64, 64), "grey")] * PREPACK_FROM)
    index.vectors()
