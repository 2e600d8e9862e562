"""Several models in one index and the copy model's lookups, end to end on real photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import ImageOps

from lookalike.api import Index
from lookalike.dupes import find_duplicates
from lookalike.models import sscd

pytest.importorskip("pdqhash")
try:
    sscd.onnx_model_path("sscd-distilled", fetch=False)
except Exception:  # pragma: no cover - depends on the machine
    pytest.skip(f"needs `{sscd.INSTALL_HINT}`", allow_module_level=True)

NAMES = ("astronaut", "chelsea", "coffee", "rocket", "china", "flower", "retina")


@pytest.fixture
def folder(tmp_path, photos):
    root = tmp_path / "photos"
    root.mkdir()
    for name in NAMES:
        photos[name].save(root / f"{name}.jpg", quality=92)
    photos["china"].rotate(90, expand=True).save(root / "china_turned.jpg", quality=85)
    ImageOps.mirror(photos["coffee"]).save(root / "coffee_mirrored.jpg", quality=85)
    return root


def test_two_models_one_catalog_and_roles(folder):
    with Index.open(folder, model="pdq,sscd-distilled", copy_extras=["dihedral"]) as index:
        report = index.update()
        assert report.embedded == 2 * 9  # each image once per model
        info = index.info().models
        assert info["serves"]["search"] == "pdq" and info["serves"]["dupes and copy lookups"] == "pdq"
        assert info["vectors"]["sscd-distilled"] == {"images": 9, "variants": 0}
        assert info["vectors"]["pdq"] == {"images": 9, "variants": 9 * 7}  # PDQ's seven turns and flips


def test_pdq_index_stores_its_turns_and_finds_mirrored_copies(folder):
    with Index.open(folder, model="pdq") as index:
        assert index.update().embedded == 9
        assert index.info().models["vectors"]["pdq"] == {"images": 9, "variants": 63}
        pairs = {frozenset(m.relative_path for m in group.members) for group in find_duplicates(index)}
        assert frozenset({"coffee.jpg", "coffee_mirrored.jpg"}) in pairs


def test_adding_a_model_embeds_only_that_model(folder):
    with Index.open(folder, model="pdq") as index:
        index.update()
    with Index.open(folder, model="pdq,sscd-distilled") as index:
        report = index.update()
        assert (report.added, report.embedded) == (0, 9)
        assert index.info().models["serves"]["dupes and copy lookups"] == "pdq"
        assert index.update().embedded == 0


def test_dupes_and_copy_lookups_find_turned_and_mirrored_copies(folder, photos, tmp_path):
    with Index.open(folder, model="sscd-distilled", copy_extras=["dihedral"]) as index:
        index.update()
        pairs = {frozenset(m.relative_path for m in group.members) for group in find_duplicates(index)}
        assert {frozenset({"china.jpg", "china_turned.jpg"}), frozenset({"coffee.jpg", "coffee_mirrored.jpg"})} \
            <= pairs
        assert all(len(pair) == 2 for pair in pairs)
        assert all(m.copy_score > 0.3 for group in find_duplicates(index) for m in group.others)
        w, h = photos["astronaut"].size
        crop = photos["astronaut"].crop((w // 5, h // 5, w // 5 + int(w * 0.55), h // 5 + int(h * 0.55)))
        [result] = index.find_copies([ImageOps.mirror(crop)], k=3)
        assert result.matches[0].relative_path == "astronaut.jpg"
        assert result.matches[0].copy_score > 0.3 > result.matches[1].copy_score
        (folder / "china_turned.jpg").unlink()
        index.update()
        assert index.info().models["vectors"]["sscd-distilled"] == {"images": 8, "variants": 24}


@pytest.mark.slow
def test_copy_lookup_tells_a_tile_from_its_siblings_through_crops_and_screenshots(tmp_path):
    """Tiles of one large photo share light and texture: a 15 % crop and a screenshot of one tile must still
    rank that tile first, with a copy score above the sibling tiles'."""
    from PIL import Image

    from lookalike.edits import EDIT_FAMILIES
    from lookalike.evalcopy import tiles

    large = Image.open("/usr/share/wallpapers/Autumn/contents/images/1920x1080.jpg").convert("RGB")
    root = tmp_path / "tiles"
    root.mkdir()
    parts = tiles(large)
    for number, part in enumerate(parts):
        part.save(root / f"tile{number}.jpg", quality=92)
    rng = np.random.default_rng(1)
    queries = [EDIT_FAMILIES["crop-15"](parts[4], rng), EDIT_FAMILIES["screenshot"](parts[1], rng),
               EDIT_FAMILIES["border"](parts[2], rng)]
    with Index.open(root, model="sscd-distilled", copy_extras=["dihedral", "regions"]) as index:
        index.update()
        found = index.find_copies(queries, k=3)
    for result, wanted in zip(found, ("tile4.jpg", "tile1.jpg", "tile2.jpg"), strict=True):
        assert result.matches[0].relative_path == wanted
        assert result.matches[0].copy_score > result.matches[1].copy_score + 0.1


def test_hash_vectors_are_searched_as_bits_with_the_float_answers():
    from lookalike.copyindex import CopyVectors

    rng = np.random.default_rng(0)
    hashes = np.where(rng.random((300, 256)) > 0.5, 1.0, -1.0) / 16
    near = hashes[:5] * np.where(np.arange(256) < 12, -1.0, 1.0)  # 12 bits flipped: cosine 1 - 24/256
    matrix = np.concatenate([hashes, near]).astype(np.float16)
    owners = np.concatenate([np.arange(300), np.arange(5)])  # a second variant for the first five images
    searcher = CopyVectors(owners, matrix, generation=0)
    assert searcher.codes is not None
    found = searcher.search(near.astype(np.float32), k=3)
    assert found.ids[:, 0].tolist() == [0, 1, 2, 3, 4] and np.allclose(found.scores[:, 0], 1.0)
    expected = np.sort((near @ hashes.T).astype(np.float32), axis=1)[:, ::-1][:, :3]
    assert np.allclose(np.sort(found.scores, axis=1)[:, ::-1][:, 1:], expected[:, 1:], atol=1e-6)
    blurred = (hashes[:2] + hashes[2:4]) / 2  # not a hash: answered by a float product, the same way
    as_floats = searcher.search(blurred.astype(np.float32), k=2)
    assert set(as_floats.ids[0]) == {0, 2} and np.allclose(as_floats.scores[0], 0.5, atol=0.1)
    floats = CopyVectors(owners, (matrix + 0.01).astype(np.float16), generation=0)
    assert floats.codes is None
