"""The one thumbnail function: decode once, keep the JPEG on disk, answer later requests from the file.

A gallery page asks for dozens of thumbnails; decoding a 24-megapixel photo for each took most of a second.
Thumbnails live in the index's cache folder (`<index>.cache/thumbnails/`), keyed by image id, the file's size
and modification time as the catalog knows them, and the thumbnail size — so a changed file (re-indexed) gets a
new key and never a stale picture. Writes go to a temporary name and are renamed, so concurrent requests for
the same image never read half a file.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from lookalike.errors import NotFoundError

QUALITY = 82


def thumbnail_folder(index) -> Path:
    return index._cache_dir() / "thumbnails"


def thumbnail(index, image_id: int, size: int, lock=None) -> tuple[bytes, bool]:
    """(JPEG bytes at most `size` pixels on the long side, whether it came from the disk cache)."""
    from contextlib import nullcontext

    with lock or nullcontext():
        details = index.details([image_id]).get(image_id)
    if details is None:
        raise NotFoundError(f"no image with id {image_id} in the index")
    cached = thumbnail_folder(index) / f"{image_id}-{details.size}-{details.mtime_ns}-{size}.jpg"
    try:
        return cached.read_bytes(), True
    except OSError:
        pass
    data = render(index.read(details.path), size)
    _store(cached, data)
    return data, False


def render(source, size: int) -> bytes:
    from lookalike.images import load_image

    image = load_image(source, draft_size=size)
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=QUALITY)
    return buffer.getvalue()


def _store(target: Path, data: bytes) -> None:
    """Best effort: an unwritable cache folder costs speed, never the answer."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as part:
            part.write(data)
        os.replace(part.name, target)
    except OSError:
        pass
