"""The gate every request passes before any route or body parser: Host/Origin allow-list, token, body size.

Why ASGI middleware rather than FastAPI dependencies: dependencies run after FastAPI has parsed the body, so a
2 GB multipart upload was written to the temp folder before its 413 (2,043 MB), and a 1 GB upload without a
token wrote ~880 MB before its 401. Here the headers decide first (no body byte is read for a refused request)
and the body is counted as it streams in, so a request never gets past the cap, with or without Content-Length.

- Host allow-list: a web page can rebind its own name to 127.0.0.1 (DNS rebinding) and then read the library
  from the visitor's browser; its requests carry `Host: its-name`, which is refused. Loopback names by default;
  `--allowed-host` adds the names a remote server is reached by.
- CSRF: any site can make a browser POST a form to a loopback server (no preflight for multipart). Requests
  marked cross-site by the browser (`Sec-Fetch-Site`) and mutations from a foreign `Origin` are refused.
- Token: only in the `Authorization` header, parsed per RFC 6750 (`Bearer` in any case, then the b64token);
  never in a URL, where it leaks into logs and history.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
BEARER = re.compile(r"bearer +(" + B64TOKEN.pattern + r")", re.IGNORECASE)
PUBLIC = ("/api/health",)  # liveness needs no secret; the page, docs and schema carry no data
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MULTIPART_OVERHEAD = 1024 * 1024  # boundaries, part headers and form fields around the files


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit:,} bytes")


@dataclass(frozen=True)
class GuardSettings:
    token: str | None = None
    allowed_hosts: frozenset[str] = LOOPBACK_NAMES  # '*' allows any Host
    upload_limit: int = 25 * 1024 * 1024  # per file
    files_per_request: dict[str, int] = field(default_factory=lambda: {"/api/compare": 2})

    def body_limit(self, path: str) -> int:
        return self.upload_limit * self.files_per_request.get(path, 1) + MULTIPART_OVERHEAD


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization: Bearer <b64token>` header (RFC 6750 §2.1), else None."""
    match = BEARER.fullmatch(header.strip())
    return match.group(1) if match else None


def _hostname(authority: str) -> str:
    """'Example.org:8000' → 'example.org'; '[::1]:8000' → '::1'."""
    try:
        return (urlsplit("//" + authority).hostname or "").lower()
    except ValueError:
        return ""


def refusal(settings: GuardSettings, scope: dict) -> tuple[int, str] | None:
    """Why this request is refused (status, message) from its headers alone, or None."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    allowed = settings.allowed_hosts
    if "*" not in allowed and _hostname(headers.get("host", "")) not in allowed:
        return 421, (f"Host {headers.get('host', '')!r} is not served here (DNS rebinding guard); start the "
                     "server with --allowed-host NAME to serve that name")
    path, method = scope.get("path", ""), scope.get("method", "GET")
    if headers.get("sec-fetch-site") == "cross-site" and path.startswith("/api/"):
        return 403, "cross-site requests are refused"
    origin = headers.get("origin")
    if method not in SAFE_METHODS and origin is not None and ("*" not in allowed or origin == "null") and (
            _hostname(urlsplit(origin).netloc) not in allowed):
        return 403, f"requests from origin {origin!r} are refused (CSRF guard)"
    if settings.token is not None and path.startswith("/api/") and path not in PUBLIC:
        given = bearer_token(headers.get("authorization", ""))
        if given is None or not hmac.compare_digest(given.encode(), settings.token.encode()):
            return 401, "missing or wrong token: send the header 'Authorization: Bearer <token>'"
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            return 400, "invalid Content-Length"
        if int(length) > settings.body_limit(path):
            return 413, f"request body larger than {settings.body_limit(path):,} bytes"
    return None


async def _answer(send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="lookalike"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware applying `refusal` before the app runs, and the body cap while it reads."""

    def __init__(self, app, settings: GuardSettings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refused = refusal(self.settings, scope)
        if refused:
            return await _answer(send, *refused)
        limit, seen, started = self.settings.body_limit(scope.get("path", "")), 0, False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:  # raised outside a route (FastAPI answers it itself inside one)
            if not started:
                await _answer(send, 413, exc.detail)
