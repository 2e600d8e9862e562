"""What the server refuses: oversized uploads, non-images, URL queries to private addresses (SSRF)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

from lookalike.errors import LookalikeError

DEFAULT_UPLOAD_LIMIT = 25 * 1024 * 1024
DEFAULT_PIXEL_LIMIT = 60_000_000  # uploads: a 60 MP photo is fine, a 100 MP PNG bomb is not
URL_TIMEOUT = 10.0
MAX_REDIRECTS = 3


class RequestRejected(LookalikeError):
    """A request the server refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_public_host(url: str, allow_private: bool = False) -> None:
    """Refuse URLs whose host resolves to a loopback, private, link-local or otherwise internal address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RequestRejected(400, "only http(s) URLs can be fetched")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except (socket.gaierror, UnicodeError) as exc:
        raise RequestRejected(400, f"cannot resolve {parts.hostname}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global or address.is_multicast:
            raise RequestRejected(403, f"{parts.hostname} is an internal address ({address}); URL queries "
                                       "to private networks are refused (start the server with --allow-private-urls)")


def fetch_url(url: str, max_bytes: int = DEFAULT_UPLOAD_LIMIT, allow_private: bool = False,
              timeout: float = URL_TIMEOUT) -> bytes:
    """GET with a timeout and a size cap, re-checking the address at every redirect."""
    import httpx

    for _ in range(MAX_REDIRECTS + 1):
        check_public_host(url, allow_private)
        try:
            with httpx.stream("GET", url, timeout=timeout, follow_redirects=False,
                              headers={"User-Agent": "lookalike"}) as response:
                if response.is_redirect:
                    url = urljoin(url, response.headers.get("location", ""))
                    continue
                if response.status_code != 200:
                    raise RequestRejected(400, f"{url} answered HTTP {response.status_code}")
                chunks, total = [], 0
                for chunk in response.iter_bytes():
                    total += len(chunk)
                    if total > max_bytes:
                        raise RequestRejected(413, f"{url} is larger than {max_bytes:,} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise RequestRejected(400, f"could not download {url}: {exc}") from exc
    raise RequestRejected(400, f"{url}: too many redirects")
