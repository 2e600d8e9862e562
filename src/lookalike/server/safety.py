"""What the server refuses: oversized uploads, non-images, URL queries to private addresses (SSRF).

A URL query is resolved once, its every address checked, and the download connects to that checked address
(the name still goes in Host and TLS SNI): resolving again for the download would let a DNS answer change in
between (rebinding). Each download has an overall deadline as well as per-read timeouts, because a server
dripping a byte a second never trips a read timeout (slow-drip URLs held every worker; /api/health took
37.6 s), and only a few downloads run at once; the rest are told to come back (503 + Retry-After).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit, urlunsplit

from lookalike.errors import LookalikeError

DEFAULT_UPLOAD_LIMIT = 25 * 1024 * 1024
DEFAULT_PIXEL_LIMIT = 60_000_000  # uploads: a 60 MP photo is fine, a 100 MP PNG bomb is not
URL_TIMEOUT = 10.0  # per connect / read
URL_DEADLINE = 20.0  # the whole download, redirects included
MAX_REDIRECTS = 3
MAX_FETCHES = 4  # downloads at once per server


class RequestRejected(LookalikeError):
    """A request the server refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def resolve_checked(url: str, allow_private: bool = False) -> str:
    """The one address a URL's host resolves to, after refusing loopback, private, link-local or otherwise
    internal addresses (any of them, when a name has several)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RequestRejected(400, "only http(s) URLs can be fetched")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:
        raise RequestRejected(400, f"cannot resolve {parts.hostname}") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        if not allow_private and (not address.is_global or address.is_multicast):
            raise RequestRejected(403, f"{parts.hostname} is an internal address ({address}); URL queries "
                                       "to private networks are refused (start the server with --allow-private-urls)")
    return str(addresses[0])


def check_public_host(url: str, allow_private: bool = False) -> None:
    resolve_checked(url, allow_private)


def pinned(url: str, address: str) -> tuple[str, dict[str, str], dict]:
    """The URL rewritten to connect to `address`, with the Host header and TLS name of the original."""
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    host = f"[{address}]" if ":" in address else address
    netloc = host + (f":{parts.port}" if parts.port else "")
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = hostname if ":" not in hostname else f"[{hostname}]"
    host_header += f":{parts.port}" if parts.port else ""
    extensions = {"sni_hostname": hostname} if parts.scheme == "https" else {}
    return target, {"Host": host_header, "User-Agent": "lookalike"}, extensions


_slots: asyncio.Semaphore | None = None


def _fetch_slots() -> asyncio.Semaphore:
    global _slots
    if _slots is None:
        _slots = asyncio.Semaphore(MAX_FETCHES)
    return _slots


async def fetch(url: str, max_bytes: int = DEFAULT_UPLOAD_LIMIT, allow_private: bool = False,
                timeout: float = URL_TIMEOUT, deadline: float = URL_DEADLINE) -> bytes:
    """GET with a size cap, an overall deadline, at most MAX_FETCHES at once, re-checking every redirect."""
    slots = _fetch_slots()
    if slots.locked():
        raise RequestRejected(503, f"{MAX_FETCHES} URL downloads are already running; retry shortly", retry_after=2)
    async with slots:
        try:
            return await asyncio.wait_for(_follow(url, max_bytes, allow_private, timeout), deadline)
        except asyncio.TimeoutError as exc:  # noqa: UP041 - a distinct class before Python 3.11
            raise RequestRejected(400, f"could not download {url} within {deadline:g} s") from exc


async def _follow(url: str, max_bytes: int, allow_private: bool, timeout: float) -> bytes:
    import httpx

    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            address = await loop.run_in_executor(None, resolve_checked, url, allow_private)
            target, headers, extensions = pinned(url, address)
            try:
                async with client.stream("GET", target, headers=headers, extensions=extensions) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise RequestRejected(400, f"{url} answered HTTP {response.status_code}")
                    return await _read_capped(response, url, max_bytes)
            except httpx.HTTPError as exc:
                raise RequestRejected(400, f"could not download {url}: {exc}") from exc
    raise RequestRejected(400, f"{url}: too many redirects")


async def _read_capped(response, url: str, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise RequestRejected(413, f"{url} is larger than {max_bytes:,} bytes")
    chunks, total = [], 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise RequestRejected(413, f"{url} is larger than {max_bytes:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def fetch_url(url: str, max_bytes: int = DEFAULT_UPLOAD_LIMIT, allow_private: bool = False,
              timeout: float = URL_TIMEOUT, deadline: float = URL_DEADLINE) -> bytes:
    """`fetch` for synchronous callers (outside an event loop)."""
    return asyncio.run(fetch(url, max_bytes, allow_private, timeout, deadline))
