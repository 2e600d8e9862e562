"""Seeded image edits for copy-detection evaluation: the transformations copies go through in the wild.

Each family maps (image, rng) → edited image; `resaved` keeps the pixels and changes only the file.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

Edit = Callable[[Image.Image, np.random.Generator], Image.Image]


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _crop(image: Image.Image, keep: float, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    cw, ch = max(8, int(w * keep)), max(8, int(h * keep))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return image.crop((left, top, left + cw, top + ch))


def _one_pixel(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    edited = image.copy()
    x, y = int(rng.integers(0, image.width)), int(rng.integers(0, image.height))
    r, g, b = edited.getpixel((x, y))  # type: ignore[misc]  # an RGB image's pixel is a 3-tuple
    edited.putpixel((x, y), (255 - r, 255 - g, 255 - b))
    return edited


def _overlay_text(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    edited = image.copy()
    draw = ImageDraw.Draw(edited)
    size = max(12, image.height // 10)
    x, y = int(rng.integers(0, max(1, image.width // 2))), int(rng.integers(0, max(1, image.height - size)))
    draw.rectangle((x, y, x + image.width // 2, y + size), fill=(255, 255, 255))
    draw.text((x + 4, y + 2), "lookalike ✓ copy", fill=(220, 0, 0))
    return edited


def _emoji(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    edited = image.copy()
    draw = ImageDraw.Draw(edited)
    r = max(8, min(image.size) // 6)
    cx, cy = int(rng.integers(r, image.width - r)), int(rng.integers(r, image.height - r))
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 205, 0), outline=(0, 0, 0))
    draw.ellipse((cx - r // 2, cy - r // 3, cx - r // 4, cy - r // 6), fill=(0, 0, 0))
    draw.ellipse((cx + r // 4, cy - r // 3, cx + r // 2, cy - r // 6), fill=(0, 0, 0))
    draw.arc((cx - r // 2, cy, cx + r // 2, cy + r // 2), 0, 180, fill=(0, 0, 0), width=2)
    return edited


def _border(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    pad = max(4, min(image.size) // 8)
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    return ImageOps.expand(image, border=pad, fill=colour)


def _jitter(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.7, 1.3)))
    image = ImageEnhance.Contrast(image).enhance(float(rng.uniform(0.7, 1.3)))
    return ImageEnhance.Color(image).enhance(float(rng.uniform(0.5, 1.5)))


def _screenshot(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Shown smaller in a window on a grey screen (title bar, margins), then captured."""
    small = image.resize((max(8, image.width * 2 // 3), max(8, image.height * 2 // 3)), Image.Resampling.BILINEAR)
    bar = max(12, small.height // 12)
    canvas = Image.new("RGB", (small.width + small.width // 5, small.height + small.height // 4 + bar), (236, 236, 236))
    canvas.paste((50, 54, 64), (0, 0, canvas.width, bar))
    canvas.paste(small, (small.width // 10, bar + small.height // 8))
    return _jpeg(canvas, 80)


EDIT_FAMILIES: dict[str, Edit] = {
    "resaved": lambda im, rng: im.copy(),
    "one-pixel": _one_pixel,
    "resize-50": lambda im, rng: im.resize((max(8, im.width // 2), max(8, im.height // 2)), Image.Resampling.LANCZOS),
    "resize-25": lambda im, rng: im.resize((max(8, im.width // 4), max(8, im.height // 4)), Image.Resampling.LANCZOS),
    "jpeg-30": lambda im, rng: _jpeg(im, 30),
    "crop-80": lambda im, rng: _crop(im, 0.8, rng),
    "crop-50": lambda im, rng: _crop(im, 0.5, rng),
    "crop-30": lambda im, rng: _crop(im, 0.3, rng),
    "crop-15": lambda im, rng: _crop(im, 0.15 ** 0.5, rng),  # 15 % of the area
    "rotate-90": lambda im, rng: im.transpose(Image.Transpose.ROTATE_90),
    "rotate-15": lambda im, rng: im.rotate(15, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(0, 0, 0)),
    "flip": lambda im, rng: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "grayscale": lambda im, rng: im.convert("L").convert("RGB"),
    "color-jitter": _jitter,
    "blur": lambda im, rng: im.filter(ImageFilter.GaussianBlur(radius=max(1.0, min(im.size) / 150))),
    "text-overlay": _overlay_text,
    "emoji-overlay": _emoji,
    "border": _border,
    "screenshot": _screenshot,
    "mirror-crop": lambda im, rng: _crop(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 0.7, rng),
    "combo": lambda im, rng: _jpeg(_crop(_jitter(im, rng), 0.7, rng).resize(
        (max(8, int(im.width * 0.35)), max(8, int(im.height * 0.35)))), 50),
}
