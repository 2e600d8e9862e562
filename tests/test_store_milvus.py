"""The Milvus store against Milvus Lite, a real engine (no mocks): same results as the embedded store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

import lookalike  # noqa: E402
from lookalike.errors import LookalikeError  # noqa: E402
from lookalike.store.milvus import parse_store_uri  # noqa: E402


def test_store_uris():
    assert parse_store_uri("milvus://db.example:19531/photos") == ("http://db.example:19531", "photos")
    assert parse_store_uri("milvus://db.example/photos") == ("http://db.example:19530", "photos")
    assert parse_store_uri("milvus-lite:///data/m.db/photos") == ("/data/m.db", "photos")
    for bad in ("milvus://host", "milvus-lite:///data/photos", "redis://x/y"):
        with pytest.raises(LookalikeError):
            parse_store_uri(bad)


def test_milvus_lite_gives_the_embedded_results_and_follows_changes(sample_folder, tmp_path, photos):
    embedded = lookalike.open(sample_folder, db=tmp_path / "embedded.db", model="efficientnet-lite0")
    embedded.update()
    store = f"milvus-lite://{tmp_path}/milvus.db/photos"
    idx = lookalike.Index.open(sample_folder, db=tmp_path / "milvus-index.db", model="efficientnet-lite0",
                               store=store)
    idx.update()
    assert idx.info().store == store
    query = photos["coffee"].resize((300, 200))
    ours = idx.search(image=query, k=8)
    theirs = embedded.search(image=query, k=8)
    assert ours.method == "milvus"
    # the same images (ties between pixel-identical copies may come in either order) with the same scores
    assert {m.relative_path for m in ours.matches[:6]} == {m.relative_path for m in theirs.matches[:6]}
    np.testing.assert_allclose([m.score for m in ours.matches], [m.score for m in theirs.matches], atol=2e-3)

    photos["rocket"].transpose(0).save(sample_folder / "mirrored rocket.png")
    (sample_folder / "coffee.png").unlink()
    idx.update()
    assert len(idx.vectors()) == 31
    paths = [m.relative_path for m in idx.search(image=photos["rocket"], k=3).matches]
    everything = [m.relative_path for m in idx.search(image=query, k=31).matches]
    assert "rocket.png" in paths and "mirrored rocket.png" in everything and "coffee.png" not in everything
    idx.close()
    reopened = lookalike.Index.open(db=tmp_path / "milvus-index.db")  # the store is remembered
    assert reopened.search(image=photos["rocket"], k=1).method == "milvus"


def test_cli_with_a_milvus_store(sample_folder, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    store = f"milvus-lite://{tmp_path}/cli.db/shop"

    def cli(*args):
        result = subprocess.run([sys.executable, "-m", "lookalike.cli", *map(str, args)], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    cli("index", sample_folder, "--model", "efficientnet-lite0", "--store", store)
    [line] = cli("search", sample_folder / "rocket.png", "-k", "1", "--json", "--db",
                 sample_folder / ".lookalike").splitlines()
    result = json.loads(line)
    assert result["method"] == "milvus" and result["results"][0]["relative_path"] == "rocket.png"
    assert json.loads(cli("info", "--json", "--db", sample_folder / ".lookalike"))["store"] == store
