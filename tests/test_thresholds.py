import json

import numpy as np
import pytest

import lookalike
from lookalike.errors import LookalikeError
from lookalike.images import scan
from lookalike.moves import mark_output_folder
from lookalike.thresholds import check_separates, reset_calibration, store_calibration, threshold_info
from tests.test_cli import run


@pytest.fixture
def index(sample_folder):
    idx = lookalike.open(sample_folder, model="efficientnet-lite0")
    idx.update()
    yield idx
    idx.close()


@pytest.mark.slow
def test_the_threshold_in_use_says_where_it_came_from(index):
    used = index.threshold()
    assert (used.value, used.source) == (0.75, "default")
    assert used.describe() == "0.7500 (default for efficientnet-lite0)"
    store_calibration(index.catalog, index.model_id, 0.62, images=15, at=1_764_000_000)
    used = index.threshold()
    assert (used.value, used.source, used.images) == (0.62, "calibrated", 15)
    assert "calibrated on 2025-11-24 from 15 images" in used.describe()
    assert "calibrate --reset` restores the default 0.7500" in used.describe()
    assert index.info().threshold["source"] == "calibrated"
    assert reset_calibration(index.catalog, index.model_id)
    assert threshold_info(index.model_id, index.catalog).source == "default"
    assert not reset_calibration(index.catalog, index.model_id)


@pytest.mark.slow
def test_reindexing_with_another_model_forgets_the_calibration(index, sample_folder):
    store_calibration(index.catalog, index.model_id, 0.62, images=15, at=1_764_000_000)
    index.close()
    with lookalike.api.Index.open(sample_folder, model="phash", reindex=True) as again:
        assert again.threshold().source == "default"


def test_a_threshold_that_merges_distinct_originals_is_refused(efficientnet, photos):
    names = ["grass", "gravel", "brick", "chelsea"]
    vectors = efficientnet.embed_images([photos[n] for n in names])
    highest = max(float(vectors[i] @ vectors[j]) for i in range(4) for j in range(i + 1, 4))
    check_separates(highest + 0.01, names, vectors)  # keeps them apart: accepted
    with pytest.raises(LookalikeError, match="would call two different originals duplicates"):
        check_separates(highest - 0.01, names, vectors)


def test_indexing_skips_folders_that_hold_lookalike_output(sample_folder):
    mark_output_folder(sample_folder / "edited")
    assert not any(f.relpath.startswith("edited/") for f in scan(sample_folder).files)


@pytest.mark.slow
def test_cli_states_the_threshold_and_resets_it(index, sample_folder):
    store_calibration(index.catalog, index.model_id, 0.46, images=15, at=1_764_000_000)
    out = run("dupes", "--json", cwd=sample_folder)
    assert json.loads(out.stdout)["threshold"]["value"] == 0.46
    assert "calibrated on 2025-11-24 from 15 images" in run("info", cwd=sample_folder).stdout
    assert "threshold 0.4600 (calibrated" in run("dupes", cwd=sample_folder).stdout.replace("\n", " ")
    reset = run("calibrate", "--reset", cwd=sample_folder)
    assert "forgot the calibrated threshold" in reset.stderr
    assert "0.7500 (default for efficientnet-lite0)" in reset.stderr
    assert json.loads(run("info", "--json", cwd=sample_folder).stdout)["threshold"]["source"] == "default"


@pytest.mark.slow
def test_calibrate_works_in_a_temporary_folder_and_stores_a_described_threshold(index, sample_folder, tmp_path,
                                                                                  photos):
    originals = tmp_path / "originals"
    originals.mkdir()
    for name in ("astronaut", "chelsea", "coffee", "rocket", "camera", "china"):
        photos[name].save(originals / f"{name}.png")
    out = run("calibrate", originals, "--db", sample_folder, cwd=sample_folder)
    assert "stored threshold" in out.stdout and "from 6 images" in out.stdout.replace("\n", " ")
    assert not (sample_folder / "lookalike-eval").exists() and not list(sample_folder.glob("lookalike-*"))
    stored = json.loads(run("info", "--json", cwd=sample_folder).stdout)["threshold"]
    assert stored["source"] == "calibrated" and stored["images"] == 6
    assert 0 < stored["value"] < 1 and np.isfinite(stored["value"])


@pytest.mark.slow
def test_calibrate_stores_a_copy_score_threshold_that_dupes_groups_by(tmp_path, photos):
    """Tiles of one large photo among other photos, and edited copies of two tiles: dupes' copy score pairs
    each copy with its tile and no sibling; calibrate stores the copy-score threshold (with its source) and
    dupes uses it."""
    from PIL import Image

    from lookalike.api import Index
    from lookalike.dupes import find_duplicates
    from lookalike.edits import EDIT_FAMILIES
    from lookalike.evalcopy import tiles
    from lookalike.models import sscd
    from lookalike.thresholds import calibrate, dupes_threshold

    try:
        sscd.onnx_model_path("sscd-distilled", fetch=False)
    except Exception:  # pragma: no cover - depends on the machine
        pytest.skip(f"needs `{sscd.INSTALL_HINT}`")
    folder, originals = tmp_path / "tiles", tmp_path / "originals"
    folder.mkdir()
    originals.mkdir()
    parts = tiles(Image.open("/usr/share/wallpapers/Autumn/contents/images/1920x1080.jpg").convert("RGB"))
    for number, part in enumerate(parts):
        part.save(folder / f"tile{number}.jpg", quality=92)
    rng = np.random.default_rng(0)
    EDIT_FAMILIES["border"](parts[2], rng).save(folder / "tile2-border.jpg")
    EDIT_FAMILIES["crop-50"](parts[4], rng).save(folder / "tile4-crop.jpg")
    for name in ("astronaut", "chelsea", "coffee", "rocket", "retina"):
        photos[name].convert("RGB").save(originals / f"{name}.jpg")
    for name, photo in photos.items():  # the rest of the collection: other photos
        photo.convert("RGB").save(folder / f"other-{name}.jpg")

    def pairs(index):
        return {frozenset(m.relative_path for m in g.members) for g in find_duplicates(index, keep=("size",))}

    expected = {frozenset({"tile2.jpg", "tile2-border.jpg"}), frozenset({"tile4.jpg", "tile4-crop.jpg"})}
    with Index.open(folder, model="sscd-distilled", copy_extras=["dihedral"]) as index:
        index.update()
        assert dupes_threshold(index).describe() == "copy score 0.0400 (default for sscd-distilled)"
        assert pairs(index) == expected
        calibrate(index, originals, tmp_path / "work")
        used = dupes_threshold(index)
        assert used.is_copy_score and used.source == "calibrated" and used.images == 5
        assert "sscd-distilled#copy" in index.catalog.get_meta("thresholds")
        assert -1.0 <= used.value <= 1.0 and pairs(index) <= expected  # 5 originals: a coarse measurement
        store_calibration(index.catalog, "sscd-distilled#copy", 0.8, images=5, at=1_764_000_000)
        assert pairs(index) == set()  # no copy here scores 0.8 over its background: the stored value rules
        assert reset_calibration(index.catalog, "sscd-distilled")
        assert dupes_threshold(index).source == "default" and pairs(index) == expected
