"""Scanning folders and decoding images. Every image lookalike reads goes through `load_image`.

A file that cannot be used never stops a run: scanning and decoding turn each failure into a reason that
the caller reports and skips.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Generic, TypeVar

from PIL import Image, ImageOps, UnidentifiedImageError

from lookalike.errors import ImageError, ImageTooLargeError
from lookalike.pixels import shrink_for, to_rgb

Listed = TypeVar("Listed")

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)
# Folders that hold thumbnails, caches or trash rather than photos (hidden folders are skipped anyway).
JUNK_DIRS = frozenset(
    {"__pycache__", "node_modules", "@eaDir", "$RECYCLE.BIN", "System Volume Information", "lost+found", "#recycle"}
)
# Guard against decompression bombs; a 200 MP phone photo still fits. Override with LOOKALIKE_MAX_PIXELS.
DEFAULT_MAX_PIXELS = 250_000_000
DEFAULT_DECODE_PIXELS = 300_000_000  # pixels decoding at once (all threads): one 250 MP image, or 25 x 12 MP photos

ImageSource = str | os.PathLike | bytes | BinaryIO


@dataclass(frozen=True)
class ScannedFile:
    relpath: str  # POSIX path relative to the scanned root: the key the catalog stores
    path: Path
    size: int
    mtime_ns: int


@dataclass
class ScanResult(Generic[Listed]):
    files: list[Listed] = field(default_factory=list)  # ScannedFile here; SourceFile for remote and URL-list sources
    problems: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason)


def scan(root: str | os.PathLike, include_hidden: bool = False) -> ScanResult[ScannedFile]:
    """List image files below `root`, following symlinks without looping, skipping hidden and junk folders."""
    result: ScanResult[ScannedFile] = ScanResult()
    visited_dirs: set[tuple[int, int]] = set()
    pending: list[tuple[Path, str]] = [(Path(root), "")]
    while pending:
        directory, rel_prefix = pending.pop()
        try:
            st = directory.stat()
            if (st.st_dev, st.st_ino) in visited_dirs:  # a symlink loop, or a second link to a scanned folder
                continue
            visited_dirs.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            result.problems.append((rel_prefix.rstrip("/") or ".", _os_reason(exc)))
            continue
        subdirs = []
        for entry in entries:
            rel = rel_prefix + entry.name
            if entry.name.startswith(".") and not include_hidden:
                continue
            try:
                if entry.is_dir(follow_symlinks=True):
                    if entry.name not in JUNK_DIRS and not is_output_folder(entry.path):
                        subdirs.append((Path(entry.path), rel + "/"))
                    continue
                if Path(entry.name).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                st = entry.stat(follow_symlinks=True)
            except FileNotFoundError:
                result.problems.append((rel, "broken symlink"))
                continue
            except OSError as exc:
                result.problems.append((rel, _os_reason(exc)))
                continue
            if stat.S_ISREG(st.st_mode):
                result.files.append(ScannedFile(rel, Path(entry.path), st.st_size, st.st_mtime_ns))
            else:  # reading a FIFO would block the run forever
                result.problems.append((rel, "not a regular file (a pipe, socket or device)"))
        pending.extend(reversed(subdirs))  # depth-first, in name order
    return result


def is_output_folder(path: str | os.PathLike) -> bool:
    """Folders lookalike wrote (moved duplicates, reports, evaluation sets) carry a marker: never indexed."""
    from lookalike.moves import OUTPUT_MARKER

    return os.path.exists(os.path.join(path, OUTPUT_MARKER))


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or type(exc).__name__


def file_digest(path: str | os.PathLike) -> str:
    """Content hash of a file's bytes: recognises moved, renamed and copied files without re-embedding them."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "blake2b").hexdigest()[:32]


_heif_registered = False


def _register_heif() -> None:
    global _heif_registered
    if not _heif_registered:
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
        except ImportError:  # HEIC then fails per file with a clear reason
            pass
        _heif_registered = True


def max_pixels() -> int:
    return int(os.environ.get("LOOKALIKE_MAX_PIXELS", DEFAULT_MAX_PIXELS))


def _let_pillow_allow(limit: int) -> None:
    """Pillow refuses images over 2 × `Image.MAX_IMAGE_PIXELS` (179 MP by default) inside `Image.open`, before
    lookalike's own check could run: a 200 MP photo under the documented 250 MP limit was skipped and
    LOOKALIKE_MAX_PIXELS could not raise it. Pillow's threshold follows ours (only ever upwards, as limits differ
    per caller: 60 MP for uploads, 250 MP for indexing), so lookalike's limit is the one that decides."""
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit


class PixelBudget:
    """At most `capacity` pixels decoding at once, across threads: decoding costs ~3-12 bytes per pixel, so 8
    worker threads each opening a PNG just under the 250 MP limit used 3.85 GB of RAM at once. An image larger
    than the whole budget still decodes, alone."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_flight = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        pixels = min(pixels, self.capacity)
        with self._changed:
            self._changed.wait_for(lambda: self.in_flight + pixels <= self.capacity)
            self.in_flight += pixels
        try:
            yield
        finally:
            with self._changed:
                self.in_flight -= pixels
                self._changed.notify_all()


_budget: PixelBudget | None = None


def decode_budget() -> PixelBudget:
    """The process-wide budget: LOOKALIKE_DECODE_PIXELS (default 300 MP, ~1-3.5 GB while decoding)."""
    global _budget
    if _budget is None:
        _budget = PixelBudget(int(os.environ.get("LOOKALIKE_DECODE_PIXELS", DEFAULT_DECODE_PIXELS)))
    return _budget


def load_image(source: ImageSource, draft_size: int | None = None, pixel_limit: int | None = None) -> Image.Image:
    """Decode an image to RGB, upright (EXIF orientation), alpha composited on grey, first frame only.

    `draft_size` lets the JPEG decoder skip detail that a model resizing to that size would throw away
    (4-8x faster on phone photos), and box-filters other formats down to it after decoding (`shrink_for`): both
    sides stay at least `draft_size`. Leave it None where exact pixels matter (hashes, pixel MD5).
    Raises ImageError with a reason a user can act on.
    """
    _register_heif()
    limit = pixel_limit or max_pixels()
    _let_pillow_allow(limit)
    try:
        fp = io.BytesIO(source) if isinstance(source, bytes) else source
        if isinstance(fp, (str, os.PathLike)) and os.path.getsize(fp) == 0:
            raise ImageError("empty file (0 bytes)")
        if isinstance(fp, io.BytesIO) and not fp.getbuffer().nbytes:
            raise ImageError("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(fp)
            width, height = image.size
            if width * height > limit:
                raise ImageTooLargeError(
                    f"too large: {width}x{height} = {width * height:,} pixels, over the {limit:,} limit")
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            with decode_budget().hold(image.width * image.height):  # after draft: the pixels really decoded
                image.load()
                ImageOps.exif_transpose(image, in_place=True)  # in place: no full-size copy when upright already
                upright = to_rgb(shrink_for(image, draft_size) if draft_size else image)
            turned = (upright.width > upright.height) != (width > height)
            upright.info["original_size"] = (height, width) if turned else (width, height)
            return upright
    except ImageError:
        raise
    except FileNotFoundError as exc:
        raise ImageError("file not found") from exc
    except PermissionError as exc:
        raise ImageError("permission denied") from exc
    except UnidentifiedImageError as exc:
        raise ImageError("not an image (unrecognised format or corrupt header)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"too large: over the {limit:,}-pixel limit ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}") from exc


def read_source_bytes(source: str, timeout: float = 20.0, max_bytes: int = 50_000_000) -> bytes:
    """Fetch an http(s) URL with a timeout and a size cap (query images given as URLs)."""
    import urllib.request

    request = urllib.request.Request(source, headers={"User-Agent": "lookalike"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read(max_bytes + 1)
    except OSError as exc:
        raise ImageError(f"could not download {source}: {exc}") from exc
    if len(data) > max_bytes:
        raise ImageError(f"{source} is larger than {max_bytes:,} bytes")
    return data


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def open_query_image(source: str | os.PathLike | bytes | Image.Image, draft_size: int | None = None) -> Image.Image:
    """A query image from a path, an http(s) URL, raw bytes or an already decoded PIL image; errors name it."""
    if isinstance(source, Image.Image):
        return to_rgb(source)
    try:
        if isinstance(source, str) and is_url(source):
            return load_image(read_source_bytes(source), draft_size)
        if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
            raise ImageError("is a folder, not an image file (give the images in it, e.g. FOLDER/*.jpg)")
        return load_image(source, draft_size)
    except ImageError as exc:
        if isinstance(source, (str, os.PathLike)) and str(source) not in str(exc):
            raise ImageError(f"{source}: {exc}") from exc
        raise
