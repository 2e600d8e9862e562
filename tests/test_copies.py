"""Copy variants: region grids, dihedral images, and ranking candidates by their image's best variant."""

from __future__ import annotations

import numpy as np
from PIL import Image

from lookalike.copies import best_per_image, extra_kinds, region_boxes, variant_images


def test_region_grid_covers_the_image_with_overlapping_halves():
    boxes = region_boxes(400, 200)
    assert len(boxes) == 9
    assert boxes["region:0.5:0:0"] == (0, 0, 200, 100) and boxes["region:0.5:2:2"] == (200, 100, 400, 200)
    assert boxes["region:0.5:1:1"] == (100, 50, 300, 150)


def test_variant_images_turn_flip_and_crop():
    image = Image.new("RGB", (40, 20))
    image.putpixel((0, 0), (255, 0, 0))
    found = variant_images(image, ("", "hflip", "rot90", "region:0.5:0:0"))
    assert found[""] is image
    assert found["hflip"].getpixel((39, 0)) == (255, 0, 0)
    assert found["rot90"].size == (20, 40) and found["rot90"].getpixel((0, 39)) == (255, 0, 0)
    assert found["region:0.5:0:0"].size == (20, 10)


def test_extra_kinds_per_model():
    assert extra_kinds("sscd", ("dihedral",)) == ("hflip", "rot90", "rot180")
    assert len(extra_kinds("pdq", ("dihedral",))) == 7
    assert len(extra_kinds("sscd", ("dihedral", "regions"))) == 12


def test_best_per_image_keeps_each_images_best_variant():
    owners = np.array([7, 7, 8, 9])
    scores = np.array([[0.9, 0.95, 0.5, 0.1]], np.float32)
    positions = np.array([[0, 1, 2, -1]])
    ids, best = best_per_image(owners, scores, positions, k=3)
    assert ids[0].tolist() == [7, 8, -1]
    assert np.allclose(best[0][:2], [0.95, 0.5])


def test_frame_box_finds_a_border_and_a_screenshot_window_but_not_a_plain_photo(photos):
    from lookalike.copies import frame_box
    from lookalike.edits import EDIT_FAMILIES

    photo = photos["astronaut"].convert("RGB")
    rng = np.random.default_rng(0)
    bordered = EDIT_FAMILIES["border"](photo, rng)
    left, top, right, bottom = frame_box(bordered)
    pad = (bordered.width - photo.width) // 2
    assert abs(left - pad) <= 3 and abs(top - pad) <= 3 and abs(right - (pad + photo.width)) <= 3
    shot = EDIT_FAMILIES["screenshot"](photo, rng)
    left, top, right, bottom = frame_box(shot)
    assert abs((right - left) - photo.width * 2 // 3) <= 6 and abs((bottom - top) - photo.height * 2 // 3) <= 6
    assert frame_box(photo) is None and frame_box(photos["coffee"].convert("RGB")) is None
    assert "trim" not in variant_images(photo, ("", "trim"))
