"""lookalike.dupes_exact: identical decoded pixels, told apart from one-pixel edits; decoded once, in parallel."""

from __future__ import annotations

import numpy as np
import pytest

import lookalike
from lookalike import dupes_exact
from lookalike.dupes_exact import PixelTwins

pytest.importorskip("pdqhash")


@pytest.fixture
def chelsea(sample_folder, monkeypatch):
    """(index, {name: id}, PixelTwins, decoded paths) for chelsea and its re-saved and one-pixel copies: same size,
    and at pdq's 64 px the same hash, so only pixels tell them apart."""
    index = lookalike.open(sample_folder, model="pdq")
    index.update()
    names = {"chelsea.png": "original", "edited/chelsea_resaved.png": "resaved",
             "edited/chelsea_onepixel.png": "onepixel"}
    ids = {names[path]: row.id for path, row in index.catalog.rows().items() if path in names}
    details = index.catalog.details(ids.values())
    vectors = {image: index.catalog.vector_of(image) for image in ids.values()}
    decoded: list[str] = []
    real = dupes_exact.pixel_hash
    monkeypatch.setattr(dupes_exact, "pixel_hash", lambda source: decoded.append(str(source)) or real(source))
    twins = PixelTwins(index, details, lambda a, b: float(np.dot(vectors[a], vectors[b])))
    return index, ids, twins, decoded


def test_same_pixels_in_other_bytes_are_twins_and_one_changed_pixel_is_not(chelsea):
    _index, ids, twins, decoded = chelsea
    assert twins.similarity(ids["original"], ids["onepixel"]) >= dupes_exact.NEAR_IDENTICAL  # vectors can't tell
    assert twins.same_pixels(ids["original"], ids["resaved"])
    assert not twins.same_pixels(ids["original"], ids["onepixel"])
    assert len(decoded) == 3  # each decoded once, though compared twice


def test_prefetch_decodes_every_candidate_once_and_the_hashes_are_stored(chelsea):
    index, ids, twins, decoded = chelsea
    twins.prefetch([list(ids.values())], workers=2)
    assert sorted(path.rsplit("/", 1)[-1] for path in decoded) == [
        "chelsea.png", "chelsea_onepixel.png", "chelsea_resaved.png"]
    assert twins.same_pixels(ids["resaved"], ids["original"])
    assert not twins.same_pixels(ids["onepixel"], ids["resaved"])
    assert len(decoded) == 3  # nothing decoded again
    twins.store()
    stored = index.catalog.details(ids.values())
    assert stored[ids["original"]].pixel_hash == stored[ids["resaved"]].pixel_hash
    assert stored[ids["original"]].pixel_hash != stored[ids["onepixel"]].pixel_hash


def test_other_sizes_are_never_decoded(chelsea, sample_folder):
    index, ids, twins, decoded = chelsea
    half = index.catalog.rows()["edited/chelsea_half.png"].id
    twins.details.update(index.catalog.details([half]))
    twins.prefetch([[ids["original"], half]], workers=2)
    assert not twins.same_pixels(ids["original"], half)
    assert decoded == []
