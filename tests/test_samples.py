from lookalike.images import load_image
from lookalike.samples import EDITS, SKIMAGE_PHOTOS, SKLEARN_PHOTOS, write_sample_folder


def test_sample_photos_are_real_colour_photographs(photos):
    assert set(photos) == set(SKIMAGE_PHOTOS) | set(SKLEARN_PHOTOS)
    assert all(p.mode == "RGB" and min(p.size) >= 150 for p in photos.values())


def test_edited_copies_keep_or_change_pixels_as_named(tmp_path, photos):
    written = write_sample_folder(tmp_path, {"chelsea": photos["chelsea"]}, edited=("chelsea",))
    assert len(written) == 1 + len(EDITS)
    original = load_image(tmp_path / "chelsea.png")
    resaved = load_image(tmp_path / "edited" / "chelsea_resaved.png")
    assert resaved.tobytes() == original.tobytes()
    assert (tmp_path / "edited" / "chelsea_resaved.png").read_bytes() != (tmp_path / "chelsea.png").read_bytes()
    onepixel = load_image(tmp_path / "edited" / "chelsea_onepixel.png")
    changed = sum(a != b for a, b in zip(onepixel.getdata(), original.getdata(), strict=True))
    assert changed == 1
    assert load_image(tmp_path / "edited" / "chelsea_half.png").size == (original.width // 2, original.height // 2)
