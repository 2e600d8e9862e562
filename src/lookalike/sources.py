"""Where images come from: a local folder, any fsspec location (s3://, gs://, az://, memory://, …), or a list
of http(s) URLs (a .txt with one per line, or a .csv with a `url` column).

Every source answers the same questions for the indexer and the verbs: which images are there (with size and a
modification stamp), what is each one's content hash, and how to read it. Remote reads are retried with
backoff; a file that still fails is reported and skipped like a corrupt local one.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lookalike.errors import LookalikeError
from lookalike.images import IMAGE_SUFFIXES, JUNK_DIRS, ScanResult, file_digest, is_url, scan

RETRIES = 3
LIST_SUFFIXES = (".txt", ".csv", ".lst")


@dataclass(frozen=True)
class SourceFile:
    relpath: str
    key: str  # what the source needs to read it (a path or URL)
    size: int
    mtime_ns: int
    content_tag: str | None = None  # from the listing: 'md5:…' or 'etag:…'

    @property
    def path(self) -> str:
        return self.key


def is_remote(location: str) -> bool:
    return "://" in str(location) and not str(location).startswith("file://")


def is_url_list(location: str) -> bool:
    return str(location).lower().endswith(LIST_SUFFIXES)


def open_source(location: str | os.PathLike):
    """The source for a folder path, an fsspec URL, or a URL list file."""
    text = str(location)
    if is_url_list(text):
        return UrlListSource(text)
    if is_remote(text):
        return FsspecSource(text)
    return LocalSource(Path(text.removeprefix("file://")).expanduser().resolve())


def _retrying(action, what: str):
    delay = 0.5
    for attempt in range(RETRIES):
        try:
            return action()
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            raise
        except Exception as exc:  # network and service errors of any fsspec backend
            if attempt == RETRIES - 1:
                raise OSError(f"{what}: {type(exc).__name__}: {exc}") from exc
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


class LocalSource:
    is_local = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def exists(self) -> bool:
        return self.root.is_dir()

    def scan(self, include_hidden: bool = False) -> ScanResult:
        return scan(self.root, include_hidden)

    def digest(self, file) -> str:
        return file_digest(file.path)

    def image_input(self, relpath: str) -> Path:
        return self.root / relpath

    def full_path(self, relpath: str) -> str:
        return str(self.root / relpath)


class FsspecSource:
    """Any fsspec filesystem. The content hash comes from the listing where the store gives one, so no
    download is needed to notice a change, a move or a copy: the content MD5 (GCS `md5Hash`, Azure
    `content_md5`), else the ETag (S3 and compatible); elsewhere it is a hash of the bytes."""

    is_local = False

    def __init__(self, url: str, **storage_options) -> None:
        try:
            import fsspec
        except ImportError as exc:
            raise LookalikeError("remote sources need `pip install 'lookalike[cloud]'` (fsspec, s3fs, …)") from exc
        self.location = url.rstrip("/")
        try:
            self.fs, self.base = fsspec.core.url_to_fs(self.location, **storage_options)
        except (ImportError, ValueError) as exc:
            raise LookalikeError(f"cannot open {url}: {exc} (install the fsspec backend for this scheme, e.g. "
                                 "s3fs, gcsfs, adlfs)") from exc
        self.base = self.base.rstrip("/")

    def exists(self) -> bool:
        try:
            return bool(_retrying(lambda: self.fs.isdir(self.base), self.location))
        except OSError:
            return False

    def scan(self, include_hidden: bool = False) -> ScanResult:
        result: ScanResult[SourceFile] = ScanResult()
        try:
            found = _retrying(lambda: self.fs.find(self.base, detail=True), self.location)
        except OSError as exc:
            result.problems.append((".", str(exc)))
            return result
        for name, info in sorted(found.items()):
            relative = PurePosixPath(name).relative_to(PurePosixPath(self.base)).as_posix()
            parts = relative.split("/")
            if info.get("type", "file") != "file" or PurePosixPath(relative).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            hidden = not include_hidden and any(p.startswith(".") for p in parts)
            if hidden or any(p in JUNK_DIRS for p in parts[:-1]):
                continue
            result.files.append(SourceFile(relative, name, int(info.get("size") or 0), _mtime_ns(info),
                                           _listed_content_tag(info)))
        return result

    def _read(self, key: str) -> bytes:
        return _retrying(lambda: self.fs.cat_file(key), key)

    def digest(self, file: SourceFile) -> str:
        if file.content_tag:
            return file.content_tag
        return hashlib.blake2b(self._read(file.key)).hexdigest()[:32]

    def image_input(self, relpath: str) -> bytes:
        return self._read(f"{self.base}/{relpath}")

    def full_path(self, relpath: str) -> str:
        return f"{self.location}/{relpath}"


def _listed_content_tag(info: dict) -> str | None:
    """'md5:<hex>' where the listing carries the content's MD5, else 'etag:<etag>', else None."""
    md5 = info.get("md5Hash")  # GCS: base64
    if md5:
        try:
            return "md5:" + base64.b64decode(md5).hex()
        except ValueError:
            pass
    settings = info.get("content_settings") or {}
    md5 = settings.get("content_md5") if isinstance(settings, dict) else getattr(settings, "content_md5", None)
    if md5:  # Azure: bytes, when the uploader set it (the SDKs do for single-shot uploads)
        return "md5:" + bytes(md5).hex()
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    return "etag:" + etag if etag else None


def _mtime_ns(info: dict) -> int:
    for key in ("mtime", "LastModified", "last_modified", "created", "updated"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return int(value.timestamp() * 1e9)
        try:
            return int(float(value) * 1e9)
        except (TypeError, ValueError):
            continue
    return 0


class UrlListSource:
    """A list of image URLs; each URL is its own key. Listed URLs already indexed are not downloaded again."""

    is_local = False

    def __init__(self, list_location: str) -> None:
        self.location = list_location

    def exists(self) -> bool:
        return is_url(self.location) or Path(self.location).expanduser().is_file()

    def _urls(self) -> list[str]:
        if is_url(self.location):
            import fsspec

            text = _retrying(lambda: fsspec.filesystem("http").cat_file(self.location), self.location).decode()
        else:
            text = Path(self.location).expanduser().read_text(encoding="utf-8")
        if self.location.lower().endswith(".csv"):
            rows = list(csv.DictReader(io.StringIO(text)))
            if rows and "url" not in rows[0]:
                raise LookalikeError(f"{self.location}: the CSV needs a 'url' column")
            urls = [row["url"].strip() for row in rows]
        else:
            urls = [line.strip() for line in text.splitlines()]
        return list(dict.fromkeys(u for u in urls if u and not u.startswith("#")))

    def scan(self, include_hidden: bool = False) -> ScanResult:
        result: ScanResult[SourceFile] = ScanResult()
        for url in self._urls():
            if not is_url(url):
                result.problems.append((url, "not an http(s) URL"))
                continue
            result.files.append(SourceFile(url, url, -1, 0))  # unknown size/time: a listed URL is immutable
        return result

    def _read(self, url: str) -> bytes:
        import fsspec

        return _retrying(lambda: fsspec.filesystem("http").cat_file(url), url)

    def digest(self, file: SourceFile) -> str:
        return hashlib.blake2b(self._read(file.key)).hexdigest()[:32]

    def image_input(self, relpath: str) -> bytes:
        return self._read(relpath)

    def full_path(self, relpath: str) -> str:
        return relpath
