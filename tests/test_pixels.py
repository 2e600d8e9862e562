"""lookalike.pixels: the box shrink every format gets before the model, and conversion to 8-bit RGB."""

from __future__ import annotations

import numpy as np
from PIL import Image

from lookalike.pixels import BACKGROUND, shrink_for, to_rgb


def test_shrink_keeps_both_sides_at_least_the_size_and_leaves_small_images_alone(photos):
    photo = photos["astronaut"]  # 512 x 512
    wide = photo.resize((1000, 300))
    assert shrink_for(wide, 64).size == (250, 75)  # factor 4 = min(1000 // 64, 300 // 64)
    assert min(shrink_for(photo, 64).size) >= 64
    assert shrink_for(photo, 300) is photo  # not twice the size: untouched
    reduced = np.asarray(shrink_for(photo, 128), np.float32)
    resized = np.asarray(photo.resize((128, 128), Image.Resampling.BOX), np.float32)
    assert np.abs(reduced - resized).mean() < 1.0  # the same picture a model resizing to 128 would see


def test_transparent_pixels_do_not_bleed_their_hidden_colour_into_the_shrunk_image():
    pixels = np.zeros((64, 64, 4), np.uint8)
    pixels[:, :32] = (255, 255, 255, 255)  # opaque white
    pixels[:, 32:] = (255, 0, 0, 0)  # transparent, with a red that must never show
    shrunk = to_rgb(shrink_for(Image.fromarray(pixels, "RGBA"), 8))
    values = np.asarray(shrunk)
    assert shrunk.mode == "RGB" and shrunk.size == (8, 8)
    assert (values[:, :4] == 255).all() and (values[:, 4:] == BACKGROUND).all()


def test_a_palette_image_with_transparency_is_shrunk_as_colours_not_as_indexes():
    palette = Image.new("P", (64, 64), 1)
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette.info["transparency"] = 0
    palette.paste(0, (0, 0, 32, 64))  # the left half transparent
    values = np.asarray(to_rgb(shrink_for(palette, 16)))
    assert (values[:, :8] == BACKGROUND).all() and (values[:, 8:] == (200, 100, 50)).all()
