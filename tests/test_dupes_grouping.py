"""dupes' array side: copy scores of pairs and complete linkage on them, on real photo embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.dupes_grouping import Groups, copy_score_pairs, copy_scores


def test_copy_scores_sure_pairs_floor_and_background():
    cosines = np.array([0.95, 0.45, 0.7, 0.7])
    offsets_a, offsets_b = np.array([0.4, 0.0, 0.1, 0.3]), np.array([0.4, 0.0, 0.1, 0.3])
    scores = copy_scores(cosines, offsets_a, offsets_b, sure=0.9, floor=0.5)
    assert scores.tolist() == pytest.approx([1.0, -1.0, 0.5, 0.1])


@pytest.mark.slow
def test_copy_score_groups_keep_a_crowded_look_alike_out(efficientnet, photos):
    """A photo, two edited copies and another photo whose background is as high as its best cosine (it
    resembles everything as much as these): complete linkage on copy scores joins the copies, not it."""
    from lookalike.edits import EDIT_FAMILIES

    rng = np.random.default_rng(0)
    photo = photos["astronaut"].convert("RGB")
    images = [photo, EDIT_FAMILIES["jpeg-30"](photo, rng), EDIT_FAMILIES["resize-50"](photo, rng), photos["camera"]]
    matrix = efficientnet.embed_images([im.convert("RGB") for im in images])
    cosine = matrix @ matrix.T
    offsets = np.array([0.0, 0.0, 0.0, float(cosine[3, :3].max())])  # the look-alike resembles everything
    pairs = [(float(cosine[a, b]), a, b) for a in range(4) for b in range(a + 1, 4)]
    scored = copy_score_pairs(pairs, offsets, sure=0.99, floor=-1.0)
    groups = Groups(matrix, offsets=offsets, sure=0.99, floor=-1.0)
    for score, a, b in scored:
        if score > 0.0:
            groups.try_merge(a, b, -0.05)
    assert sorted(groups.members(0)) == [0, 1, 2]
    assert groups.members(3) == [3]
