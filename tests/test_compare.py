import io

from lookalike.compare import compare_images


def test_classic_hashes_disagree_where_the_embedding_sees_the_same_photo(tmp_path, photos, efficientnet):
    cat = photos["chelsea"]
    cat.save(tmp_path / "cat.png")
    cat.save(tmp_path / "cat-resaved.png", optimize=True, compress_level=1)
    small = cat.resize((cat.width // 2, cat.height // 2))
    small.save(tmp_path / "cat-small.jpg", quality=80)

    resaved = compare_images(str(tmp_path / "cat.png"), str(tmp_path / "cat-resaved.png"), efficientnet)
    assert resaved.file_md5_equal is False and resaved.pixel_md5_equal is True
    assert resaved.cosine > 0.999 and resaved.phash_distance == 0

    resized = compare_images(str(tmp_path / "cat.png"), str(tmp_path / "cat-small.jpg"), efficientnet)
    assert resized.file_md5_equal is False and resized.pixel_md5_equal is False
    assert resized.cosine > 0.9 and resized.phash_distance <= 6
    assert resized.percent == (resized.cosine + 1) * 50
    assert resized.sizes == (cat.size, small.size)

    other = compare_images(str(tmp_path / "cat.png"), photos["rocket"], efficientnet)
    assert other.cosine < 0.6 and other.phash_distance > 16 and other.file_md5_equal is None


def test_one_pixel_change_breaks_pixel_md5_only(photos, efficientnet):
    cat = photos["chelsea"]
    edited = cat.copy()
    edited.putpixel((10, 10), (0, 0, 0))
    buffer = io.BytesIO()
    cat.save(buffer, "PNG")
    result = compare_images(buffer.getvalue(), edited, efficientnet)
    assert result.pixel_md5_equal is False and result.cosine > 0.999 and result.phash_distance == 0
    assert set(result.as_dict()) >= {"cosine", "percent", "file_md5_equal", "pixel_md5_equal", "phash_distance"}


def test_compare_with_verification_says_where_the_crop_sits(efficientnet, photos):
    cat = photos["chelsea"]
    found = compare_images(cat, cat.crop((100, 50, 400, 250)), efficientnet, verify=True).as_dict()
    assert found["verification"]["verified"] and found["verification"]["region"]["in"] == "a"
    assert abs(found["verification"]["region"]["quad"][0][0] - 100) < 4
    other = compare_images(cat, photos["coffee"], efficientnet, verify=True).as_dict()
    assert not other["verification"]["verified"] and other["verification"]["reason"]
    assert compare_images(cat, cat, efficientnet).as_dict()["verification"] is None


def test_verdict_bands_are_the_models_verb_thresholds(tmp_path, photos, efficientnet):
    """compare's "near-duplicate" is exactly dupes' threshold; "similar" is recognize's; an index's calibrated
    threshold moves the near-duplicate band."""
    from lookalike.models.specs import thresholds_for

    cat = photos["chelsea"]
    resized = compare_images(cat, cat.resize((cat.width // 2, cat.height // 2)), efficientnet)
    defaults = thresholds_for("efficientnet-lite0")
    assert (resized.near_duplicate_at, resized.similar_at) == (defaults.dupes, defaults.examples)
    assert resized.verdict == "near-duplicate"
    assert resized.as_dict()["bands"] == {"near_duplicate": 0.75, "similar": 0.55}
    different = compare_images(cat, photos["rocket"], efficientnet)
    assert different.verdict == "different"
    strict = compare_images(cat, cat.resize((cat.width // 2, cat.height // 2)), efficientnet,
                            near_duplicate_at=0.9999)
    assert strict.verdict == "similar" and strict.as_dict()["verdict"] == "similar"
