import numpy as np

from lookalike.edits import EDIT_FAMILIES


def test_every_family_edits_reproducibly(photos):
    image = photos["coffee"]
    for name, edit in EDIT_FAMILIES.items():
        first = edit(image, np.random.default_rng(3))
        second = edit(image, np.random.default_rng(3))
        assert first.mode == "RGB" and first.tobytes() == second.tobytes(), name
        if name != "resaved":
            assert first.size != image.size or first.tobytes() != image.tobytes(), name


def test_geometry_of_some_edits(photos):
    image = photos["rocket"]
    rng = np.random.default_rng(0)
    assert EDIT_FAMILIES["resize-25"](image, rng).size == (image.width // 4, image.height // 4)
    assert EDIT_FAMILIES["crop-50"](image, rng).size == (image.width // 2, image.height // 2)
    assert EDIT_FAMILIES["rotate-90"](image, rng).size == (image.height, image.width)
    assert EDIT_FAMILIES["border"](image, rng).width > image.width
