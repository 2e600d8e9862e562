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
