"""Ray engine on a local Ray (ray.init() on this machine): same index as in-process, resumable shards."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ray")

import lookalike  # noqa: E402
from lookalike.distributed import RayEngine  # noqa: E402


@pytest.fixture(scope="module")
def ray_session():
    import ray

    yield
    ray.shutdown()


def _vectors(idx):
    return {path: idx.catalog.vector_of(row.id) for path, row in idx.catalog.rows().items()}


def test_ray_engine_builds_the_same_index_and_resumes(sample_folder, tmp_path, ray_session):
    (sample_folder / "broken.jpg").write_bytes(b"not an image")
    local = lookalike.open(sample_folder, db=tmp_path / "local.db", model="efficientnet-lite0")
    local.update()
    engine = RayEngine(tmp_path / "shards", shard_size=12, batch_size=8)
    distributed = lookalike.open(sample_folder, db=tmp_path / "ray.db", model="efficientnet-lite0")
    report = distributed.update(engine=engine)
    assert report.added == 31 and dict(report.skipped).keys() == {"broken.jpg"}
    assert engine.computed_shards == 3 and len(list((tmp_path / "shards").glob("*.parquet"))) == 3
    ours, theirs = _vectors(distributed), _vectors(local)
    assert ours.keys() == theirs.keys()
    assert min(float(ours[p] @ theirs[p]) for p in ours) > 0.999

    # A crashed run: the catalog lost its rows, but the shards on disk are reused, not recomputed.
    again = lookalike.open(sample_folder, db=tmp_path / "resumed.db", model="efficientnet-lite0")
    resumed_engine = RayEngine(tmp_path / "shards", shard_size=12, batch_size=8)
    assert again.update(engine=resumed_engine).added == 31
    assert resumed_engine.computed_shards == 0
    np.testing.assert_array_equal(_vectors(again)["rocket.png"], ours["rocket.png"])


def test_cli_engine_ray(sample_folder, tmp_path):
    import json
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "lookalike.cli", "index", str(sample_folder), "--model",
                             "efficientnet-lite0", "--engine", "ray", "--shards", str(tmp_path / "s"), "--json"],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["added"] == 31 and list((tmp_path / "s").glob("*.parquet"))
