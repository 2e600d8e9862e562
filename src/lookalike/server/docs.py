"""API docs that work without a network: Swagger UI's files are served from an installed package.

FastAPI's default /docs page loads Swagger UI from a CDN, so on an offline machine (or behind a strict proxy) it
is blank. `fastapi-offline` ships Swagger UI 5 (which reads OpenAPI 3.1, FastAPI's format) and ReDoc as package
data; we serve those files under /docs-assets and build the pages with FastAPI's own helpers.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def assets_folder() -> Path:
    """Swagger UI's files from the installed `fastapi-offline` package (its `server` extra installs it)."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def add_offline_docs(app: FastAPI) -> None:
    """/docs and /redoc with local assets; the app must be created with docs_url=None, redoc_url=None."""
    try:
        folder = assets_folder()
    except ImportError:  # docs are a convenience: the API works without them
        return
    app.mount(ASSETS, StaticFiles(directory=folder), name="docs-assets")
    title = f"{app.title} API"

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=title,
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon.png",
                                   oauth2_redirect_url="/docs/oauth2-redirect")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url or "/openapi.json", title=title,
                              redoc_js_url=f"{ASSETS}/redoc.standalone.js", redoc_favicon_url=f"{ASSETS}/favicon.png",
                              with_google_fonts=False)
