"""Pixel conversions after decoding: to 8-bit RGB (alpha composited, high bit depths scaled) and the box shrink
that lets every format skip the detail a model throws away (`lookalike.images.load_image` uses both)."""

from __future__ import annotations

from PIL import Image

# Transparent pixels are composited on a neutral grey: white or black artwork on a transparent background
# (icons, logos, stamps) keeps its shape; on white, white artwork became a blank image and every such image
# matched every other at 1.0.
BACKGROUND = (128, 128, 128)


# Modes Image.reduce averages correctly (RGBA and LA premultiplied by Pillow); palette images are converted first.
REDUCIBLE_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P"})


def shrink_for(image: Image.Image, size: int) -> Image.Image:
    """A box-filtered copy whose sides are still at least `size` (or the image itself when it is not twice that):
    what JPEG's draft mode does while decoding, for every other format. A model that resizes to `size` sees the
    same picture, and compositing, conversion and its own resize work on a fraction of the pixels (a 2,000 px
    clip-art PNG for a 64 px hash: 900 times fewer)."""
    factor = min(image.width // size, image.height // size)
    if factor < 2 or image.mode not in REDUCIBLE_MODES:
        return image
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    return image.reduce(factor)


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if image.mode in HIGH_DEPTH_MODES:
        image = to_8bit(image)
    return image.convert("RGB")


HIGH_DEPTH_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})


def to_8bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale (TIFF, PNG, scientific images) to 8 bits by what the values mean:
    16-bit data by its full range; floats in [0, 1] as intensities; anything else (32-bit counts, HDR floats,
    negative values) stretched from its minimum to its maximum. Pillow's own conversion clips them, so such TIFFs
    decoded all black or all white."""
    import numpy as np

    values = np.asarray(image).astype(np.float64)
    values[~np.isfinite(values)] = 0.0
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode.startswith("I;16") or (image.mode == "I" and low >= 0 and high <= 65535):
        scaled = values / 257.0
    elif image.mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255.0
    else:
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")
