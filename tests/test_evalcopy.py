"""The hard copy-detection set and copy methods: tiles, variant similarity, the normalised copy score."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike.evalcopy import background, best_similarity, build_hard_set, copy_scores, evaluate_method, tiles


def test_tiles_cover_the_photo_in_a_3x2_grid():
    parts = tiles(Image.new("RGB", (1800, 1000)))
    assert len(parts) == 6 and {p.size for p in parts} == {(600, 500)}


def test_best_similarity_takes_the_best_variant_of_both_sides():
    queries = (np.array([0, 0, 1]), np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]))
    references = (np.array([0, 1, 1]), np.array([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]]))
    assert np.allclose(best_similarity(queries, references), [[1.0, 1.0], [0.8, 0.6]])


def test_copy_score_lowers_images_that_resemble_everything():
    similarity = np.array([[0.9] + [0.8] * 20, [0.9] + [0.1] * 20])  # a flat image vs a distinctive one
    scores = copy_scores(similarity, background(similarity))
    assert scores[1, 0] > scores[0, 0]
    assert background(similarity)[0] == pytest.approx(0.8)
    assert background(similarity, (10, 20))[1] == pytest.approx(0.1)


@pytest.mark.slow
def test_hard_set_holds_tiles_negatives_and_distractors(tmp_path, photos):
    big = Image.new("RGB", (1800, 1200))
    big.paste(photos["astronaut"].resize((900, 1200)), (0, 0))
    big.paste(photos["coffee"].resize((900, 1200)), (900, 0))
    big.save(tmp_path / "big.jpg")
    photos["chelsea"].save(tmp_path / "chelsea.jpg")
    photos["rocket"].save(tmp_path / "clip.png")
    data = build_hard_set([tmp_path / "big.jpg", tmp_path / "chelsea.jpg"], tmp_path / "set", [tmp_path / "clip.png"],
                          per_original=2)
    assert len(data.queries) == 2 * 7  # six tiles and one whole photo, two edits each
    assert sum(t is None for t in data.truth) == 2  # one original in five held out
    assert len(data.references) == 7 - 1 + 1


@pytest.mark.slow
def test_dihedral_queries_find_turned_copies(tmp_path, photos):
    pytest.importorskip("pdqhash")
    originals = [tmp_path / f"{n}.jpg" for n in ("astronaut", "coffee", "chelsea", "rocket", "china", "flower")]
    for path in originals:
        photos[path.stem].save(path)
    data = build_hard_set(originals, tmp_path / "set", [], per_original=4, negative_fraction=0.0)
    plain, turned = evaluate_method(data, "pdq"), evaluate_method(data, "pdq+dihedral")
    assert turned.per_family.get("rotate-90", 1.0) == 1.0 and turned.per_family.get("flip", 1.0) == 1.0
    assert turned.accuracy_at_1 >= plain.accuracy_at_1
