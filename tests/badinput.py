"""A folder of hostile and odd inputs next to good images: what an index must survive.

`write_corpus(folder, photos)` writes it and returns which names must be indexed and which reported. Used by
tests/test_indexer.py; run it by hand to get a folder for audits:

    python tests/badinput.py /tmp/bad-corpus      # then: lookalike index /tmp/bad-corpus --model phash

Bad: empty, text posing as JPEG/PNG, HTML posing as PNG, truncated JPEG/PNG, pixel bombs (PNG, JPEG, GIF
headers claiming gigapixels in a few hundred bytes), a broken symlink, a loop of file links, a FIFO.
Good but odd: names of invalid UTF-8, terminal escape codes, newlines, 255-byte names; 16-bit PNG, 16/32-bit and
float TIFF, CMYK JPEG, palette with transparency, animated GIF, grey+alpha, BMP, WebP, 1x1 and 1x3000 pixels,
and a symlink loop between folders (scanned once, not forever).
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class Corpus:
    good: set[str] = field(default_factory=set)  # relative paths that must be indexed
    bad: set[str] = field(default_factory=set)  # relative paths that must be reported as skipped


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int, height: int) -> bytes:
    """A PNG header claiming width x height grey pixels, with one compressed row of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 1024))
            + _chunk(b"IEND", b""))


def jpeg_bomb(width: int, height: int) -> bytes:
    """A real tiny JPEG whose frame header (SOF0) is patched to claim width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_bomb() -> bytes:
    """A GIF whose logical screen and only frame claim 65535 x 65535 pixels."""
    buffer = io.BytesIO()
    Image.new("P", (4, 4)).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", 65535, 65535)
    image_descriptor = data.index(b"\x2c")
    data[image_descriptor + 5:image_descriptor + 9] = struct.pack("<HH", 65535, 65535)
    return bytes(data)


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _write(folder: Path, name: bytes | str, data: bytes) -> str:
    raw = os.path.join(os.fsencode(folder), os.fsencode(name))
    os.makedirs(os.path.dirname(raw), exist_ok=True)
    with open(raw, "wb") as out:
        out.write(data)
    return os.fsdecode(name)


def _good_files(photo: Image.Image) -> dict[bytes, bytes]:
    rgb = photo.convert("RGB").resize((160, 120))
    ramp = np.tile(np.linspace(0, 1, 160, dtype=np.float32), (120, 1))
    frames = [rgb, rgb.rotate(90), rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return {
        b"names/bad\xff\xfe.jpg": _encoded(rgb, "JPEG"),
        b"names/latin1-caf\xe9.png": _encoded(rgb.rotate(10), "PNG"),
        b"names/\x1b[31mred\x1b[0m\x1b]0;title\x07.png": _encoded(rgb.rotate(20), "PNG"),
        b"names/new\nline.png": _encoded(rgb.rotate(30), "PNG"),
        b"names/-rf --no-preserve-root.png": _encoded(rgb.rotate(40), "PNG"),
        b"names/" + b"long" * 61 + b".png": _encoded(rgb.rotate(50), "PNG"),  # 248 bytes
        b"formats/sixteen.png": _encoded(Image.fromarray((ramp * 65535).astype(np.uint16)), "PNG"),
        b"formats/sixteen.tif": _encoded(Image.fromarray((ramp * 65535).astype(np.uint16)), "TIFF"),
        b"formats/int32.tif": _encoded(
            Image.fromarray((ramp.astype(np.float64) * (2**31 - 1)).astype(np.int32), "I"), "TIFF"),
        b"formats/float.tif": _encoded(Image.fromarray(ramp, "F"), "TIFF"),
        b"formats/cmyk.jpg": _encoded(rgb.convert("CMYK"), "JPEG"),
        b"formats/palette-alpha.png": _encoded(palette, "PNG", transparency=0),
        b"formats/animated.gif": _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        b"formats/grey-alpha.png": _encoded(rgb.convert("LA"), "PNG"),
        b"formats/bitmap.bmp": _encoded(rgb, "BMP"),
        b"formats/web.webp": _encoded(rgb, "WEBP"),
        b"formats/UPPER.JPG": _encoded(rgb.rotate(60), "JPEG"),
        b"formats/dot.png": _encoded(Image.new("RGB", (1, 1), "red"), "PNG"),
        b"formats/strip.png": _encoded(rgb.resize((1, 3000)), "PNG"),
    }


def _bad_files(photo: Image.Image) -> dict[bytes, bytes]:
    jpeg, png = _encoded(photo.convert("RGB"), "JPEG"), _encoded(photo.convert("RGB"), "PNG")
    return {
        b"bad/empty.jpg": b"",
        b"bad/text.jpg": b"Dear diary, this is not a photo.\n" * 20,
        b"bad/page.png": b"<!doctype html><html><body>404 not found</body></html>",
        b"bad/truncated.jpg": jpeg[: len(jpeg) // 3],
        b"bad/truncated.png": png[: len(png) // 2],
        b"bad/bomb.png": png_bomb(100_000, 100_000),  # 10 GP
        b"bad/bomb.jpg": jpeg_bomb(65_000, 65_000),  # 4.2 GP
        b"bad/bomb.gif": gif_bomb(),  # 4.3 GP
        b"bad/\xff-bad-name-bad-data.png": b"\x89PNG\r\n\x1a\n garbage",
    }


def write_corpus(folder: str | os.PathLike, photo: Image.Image) -> Corpus:
    """Write the corpus into `folder` (created) from one real photo; returns the expected outcome per file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = Corpus()
    for name, data in _good_files(photo).items():
        corpus.good.add(_write(folder, name, data))
    for name, data in _bad_files(photo).items():
        corpus.bad.add(_write(folder, name, data))
    links = folder / "links"
    links.mkdir()
    os.symlink("../formats", links / "formats-again")  # a second way into a folder: scanned once
    os.symlink("..", links / "up")  # a loop: scanned once, not forever
    os.symlink("missing.jpg", links / "dangling.jpg")
    os.symlink("loop-b.jpg", links / "loop-a.jpg")
    os.symlink("loop-a.jpg", links / "loop-b.jpg")
    corpus.bad |= {"links/dangling.jpg", "links/loop-a.jpg", "links/loop-b.jpg"}
    os.mkfifo(folder / "bad" / "pipe.jpg")  # reading it would block forever
    corpus.bad.add("bad/pipe.jpg")
    return corpus


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from lookalike.samples import sample_photos

    made = write_corpus(sys.argv[1] if len(sys.argv) > 1 else "bad-corpus", sample_photos()["chelsea"])
    print(f"{len(made.good)} good and {len(made.bad)} bad files written")
