import shutil

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike.cluster import NOISE, cluster_index, cluster_vectors, contact_sheet, link_folders, map_png, rows
from lookalike.errors import LookalikeError

FAMILIES = ("chelsea", "astronaut", "coffee")


@pytest.fixture
def families(sample_folder):
    """Three photo families of six images each (an original and five edited copies)."""
    for path in list(sample_folder.glob("*.png")):
        if path.stem not in FAMILIES:
            path.unlink()
    idx = lookalike.open(sample_folder, model="efficientnet-lite0")
    idx.update()
    return idx


def _family(path: str) -> str:
    return path.split("/")[-1].split("_")[0].split(".")[0]


@pytest.mark.slow
def test_automatic_k_separates_the_photo_families(families):
    clustering = cluster_index(families)
    assert clustering.k == 3 and clustering.silhouette > 0.3
    entries = rows(families, clustering)
    for cluster in set(clustering.labels.tolist()):
        assert len({_family(e["relative_path"]) for e in entries if e["cluster"] == cluster}) == 1
    assert sorted(clustering.sizes().values()) == [6, 6, 6]


@pytest.mark.slow
def test_given_k_and_reproducibility(families):
    first = cluster_index(families, k=2, seed=1)
    assert first.k == 2 and len(set(first.labels.tolist())) == 2
    np.testing.assert_array_equal(first.labels, cluster_index(families, k=2, seed=1).labels)
    with pytest.raises(LookalikeError, match="--k"):
        cluster_index(families, k=100)


def test_hdbscan_leaves_outliers_unassigned():
    rng = np.random.default_rng(0)
    base = rng.normal(size=64)
    centres = base + 0.4 * rng.normal(size=(3, 64))  # three dense blobs in one region of the sphere
    blobs = [c + 0.03 * rng.normal(size=(30, 64)) for c in centres]
    outliers = rng.normal(size=(4, 64))  # lone images elsewhere: no density, so no cluster
    matrix = np.vstack([*blobs, outliers]).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    result = cluster_vectors(np.arange(len(matrix)), matrix.astype(np.float16), method="hdbscan",
                             min_cluster_size=5)
    assert result.k == 3
    for blob in range(3):
        labels = result.labels[blob * 30:(blob + 1) * 30]
        assert len(set(labels.tolist())) == 1 and labels[0] != NOISE
    assert np.all(result.labels[90:] == NOISE)


@pytest.mark.slow
def test_outputs_links_contact_sheet_and_map(families, tmp_path):
    clustering = cluster_index(families)
    entries = rows(families, clustering)
    link_folders(entries, tmp_path / "links")
    folders = sorted(p.name for p in (tmp_path / "links").iterdir())
    assert folders == ["cluster-000", "cluster-001", "cluster-002"]
    assert all(p.is_symlink() and p.resolve().exists() for p in (tmp_path / "links").rglob("*.*"))
    contact_sheet(entries, tmp_path / "clusters.html")
    assert (tmp_path / "clusters.html").read_text().count("<section>") == 3
    ids, matrix, _ = families.catalog.all_vectors(families.dim)
    map_png(matrix, clustering.labels, tmp_path / "map.png")
    image = Image.open(tmp_path / "map.png")
    colours = {c for _, c in image.getcolors(1 << 20) if c != (255, 255, 255)}
    assert image.size == (900, 900) and len(colours & {(31, 119, 180), (255, 127, 14), (44, 160, 44)}) == 3
    shutil.rmtree(tmp_path / "links")


def test_too_few_images():
    with pytest.raises(LookalikeError, match="at least 2"):
        cluster_vectors(np.arange(1), np.ones((1, 4), np.float16))


def test_small_collections_cluster_without_faiss_warnings(capfd):
    from lookalike.cluster import cluster_vectors

    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(31, 64)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    cluster_vectors(np.arange(31), matrix)  # tries k = 2..5, each once a FAISS warning
    assert "WARNING" not in capfd.readouterr().err
