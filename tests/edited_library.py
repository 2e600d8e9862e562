"""A photo library with edited copies of each original: a border, caption and emoji overlays, a screenshot that
shows the photo, crops (one upscaled back to full size) and a lower-quality re-save. File dates are shuffled, so
nothing can find the originals by age."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

COPIES = ("resaved", "border", "caption", "emoji", "screenshot", "crop", "crop_upscaled")


def _save(image: Image.Image, path: Path, quality: int = 92) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        image.save(path, "PNG")
    else:
        image.save(path, "JPEG", quality=quality)


def screenshot(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    canvas = Image.new("RGB", (1280, 800), (246, 246, 246))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, 1280, 36), fill=(222, 222, 226))
    draw.text((16, 12), "Photos - holiday album", fill=(30, 30, 30))
    draw.rectangle((0, 36, 220, 800), fill=(236, 238, 242))
    for row in range(8):
        draw.text((20, 70 + 40 * row), f"Album {row + 1}", fill=(60, 60, 60))
    scale = min(960 / photo.width, 680 / photo.height, 1.0) * float(rng.uniform(0.7, 1.0))
    shown = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.LANCZOS)
    left = 260 + int(rng.integers(0, 960 - shown.width + 1))
    top = 60 + int(rng.integers(0, 700 - shown.height + 1))
    canvas.paste(shown, (left, top))
    return canvas


def caption(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    edited = photo.copy()
    draw = ImageDraw.Draw(edited)
    height = max(16, photo.height // 9)
    top = int(rng.integers(0, photo.height - height))
    draw.rectangle((0, top, photo.width, top + height), fill=(255, 255, 255))
    draw.text((8, top + height // 3), "Happy holidays from all of us!", fill=(200, 0, 0))
    return edited


def emoji(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    edited = photo.copy()
    draw = ImageDraw.Draw(edited)
    r = max(10, min(photo.size) // 7)
    cx, cy = int(rng.integers(r, photo.width - r)), int(rng.integers(r, photo.height - r))
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 205, 0), outline=(0, 0, 0), width=2)
    draw.ellipse((cx - r // 2, cy - r // 3, cx - r // 4, cy - r // 6), fill=(0, 0, 0))
    draw.ellipse((cx + r // 4, cy - r // 3, cx + r // 2, cy - r // 6), fill=(0, 0, 0))
    return edited


def crop(photo: Image.Image, rng: np.random.Generator, keep: float) -> Image.Image:
    width, height = photo.size
    crop_width, crop_height = int(width * keep), int(height * keep)
    left, top = int(rng.integers(0, width - crop_width + 1)), int(rng.integers(0, height - crop_height + 1))
    return photo.crop((left, top, left + crop_width, top + crop_height))


def write_library(folder: Path, photos: dict[str, Image.Image], seed: int = 0) -> dict[str, Path]:
    """Originals as FOLDER/NAME.jpg, copies as FOLDER/copies/NAME_EDIT.jpg|png; returns the originals."""
    rng = np.random.default_rng(seed)
    originals = {}
    for name, photo in photos.items():
        originals[name] = folder / f"{name}.jpg"
        _save(photo, originals[name])
        copies = folder / "copies"
        _save(photo, copies / f"{name}_resaved.jpg", quality=70)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        _save(ImageOps.expand(photo, max(8, min(photo.size) // 10), fill=colour), copies / f"{name}_border.jpg")
        _save(caption(photo, rng), copies / f"{name}_caption.jpg")
        _save(emoji(photo, rng), copies / f"{name}_emoji.jpg")
        _save(screenshot(photo, rng), copies / f"{name}_screenshot.png")
        _save(crop(photo, rng, 0.7), copies / f"{name}_crop.jpg")
        upscaled = crop(photo, rng, 0.6).resize(photo.size, Image.Resampling.BICUBIC)
        _save(upscaled, copies / f"{name}_crop_upscaled.jpg")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path, stamp in zip(files, rng.permutation(len(files)), strict=True):  # dates say nothing: shuffled
        when = 1_600_000_000 + int(stamp) * 3600
        os.utime(path, (when, when))
    return originals
