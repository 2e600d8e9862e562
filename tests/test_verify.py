import io
import itertools

import numpy as np
import pytest
from PIL import Image, ImageOps

from lookalike.verify import extract_features, required_inliers, verify_features, verify_images


def _jpeg(image: Image.Image, quality: int = 70) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _gradient(width: int, height: int, vertical: bool = False, noise: float = 3.0) -> Image.Image:
    ramp = np.linspace(0, 255, height if vertical else width)
    field = np.tile(ramp[:, None], (1, width)) if vertical else np.tile(ramp, (height, 1))
    noisy = field + np.random.default_rng(0).normal(0, noise, field.shape)
    return _jpeg(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).convert("RGB"))


@pytest.mark.slow
def test_unrelated_photos_gradients_and_flat_images_never_verify(photos):
    images = dict(photos)
    images["gradient"] = _gradient(640, 480)
    images["vertical gradient"] = _gradient(640, 480, vertical=True)
    images["smooth gradient"] = _gradient(512, 512, noise=0)
    images["flat"] = Image.new("RGB", (400, 300), (120, 130, 140))
    features = {name: extract_features(image) for name, image in images.items()}
    for a, b in itertools.combinations(features, 2):
        result = verify_features(features[a], features[b])
        assert not result.verified, (a, b, result)
        assert result.region() is None


def test_answer_does_not_depend_on_argument_order(photos):
    astronaut = photos["astronaut"]
    for other in (astronaut.crop((100, 80, 400, 330)), photos["coffee"], _gradient(512, 512)):
        forward, backward = verify_images(astronaut, other), verify_images(other, astronaut)
        assert (forward.verified, forward.inliers, forward.matches) == (
            backward.verified, backward.inliers, backward.matches)
        if forward.verified:
            assert forward.region()["quad"] == backward.region()["quad"]
            assert {forward.region()["in"], backward.region()["in"]} == {"a", "b"}


@pytest.mark.parametrize("box", [(100, 80, 400, 330), (150, 150, 348, 348)])  # 29 % and 15 % of the area
def test_a_crop_is_located_in_its_original_within_a_few_pixels(photos, box):
    result = verify_images(photos["astronaut"], _jpeg(photos["astronaut"].crop(box), 85))
    assert result.verified
    region = result.region()
    assert region["in"] == "a"  # the original is the larger image
    left, top, right, bottom = box
    expected = np.array([[left, top], [right, top], [right, bottom], [left, bottom]], float)
    assert np.abs(np.array(region["quad"]) - expected).max() < 4


def test_an_upscaled_crop_is_located_too(photos):
    crop = photos["chelsea"].crop((120, 40, 360, 220)).resize((480, 360), Image.Resampling.BICUBIC)
    region = verify_images(crop, photos["chelsea"]).region()
    assert region["in"] == "b"
    assert np.abs(np.array(region["quad"]) - [[120, 40], [360, 40], [360, 220], [120, 220]]).max() < 4


def test_mirrored_rotated_bordered_and_small_copies_verify(photos):
    cat = photos["chelsea"]
    mirrored = verify_images(cat, cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert mirrored.verified and mirrored.mirrored
    assert verify_images(cat, cat.rotate(90, expand=True)).verified
    bordered = verify_images(cat, ImageOps.expand(cat, 60, fill=(10, 200, 30)))
    assert bordered.verified and not bordered.mirrored
    assert np.abs(np.array(bordered.region()["quad"]) - [[60, 60], [511, 60], [511, 360], [60, 360]]).max() < 4
    quarter = photos["astronaut"].resize((128, 128), Image.Resampling.LANCZOS)  # ~100 keypoints: fewer inliers
    small = verify_images(photos["astronaut"], quarter)
    assert small.verified and small.inliers < 40


def test_without_mirror_matching_a_mirror_image_is_not_verified(photos):
    cat = photos["chelsea"]
    assert not verify_images(cat, cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT), mirror=False).verified


def test_the_inlier_minimum_scales_with_the_keypoints():
    assert required_inliers(1500, 1500) == 40
    assert required_inliers(1500, 300) == 15
    assert required_inliers(50, 1500) == 12


def test_a_screenshot_containing_the_photo_verifies_and_locates_it(photos):
    coffee = photos["coffee"]  # 600x400
    screen = Image.new("RGB", (1280, 800), (236, 236, 236))
    screen.paste(coffee.resize((450, 300), Image.Resampling.LANCZOS), (300, 200))
    result = verify_images(coffee, screen)
    assert result.verified and result.region()["in"] == "b"
    assert np.abs(np.array(result.region()["quad"]) - [[300, 200], [750, 200], [750, 500], [300, 500]]).max() < 5
