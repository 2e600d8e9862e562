import numpy as np
import pytest

import lookalike
from lookalike.errors import LookalikeError, ModalityError
from lookalike.fusion import fused_search, label_from_filename, load_labels, standardise
from lookalike.search import make_query


@pytest.fixture
def catalogue(tmp_path, photos, tiny_clip_dir):
    folder = tmp_path / "shop"
    folder.mkdir()
    names = {"chelsea": "tabby_cat_01", "rocket": "space-rocket", "coffee": "espresso_cup", "flower": "red flower",
             "clock": "wall_clock_2"}
    for photo, name in names.items():
        photos[photo].save(folder / f"{name}.png")
    idx = lookalike.open(folder, model=str(tiny_clip_dir))
    idx.update()
    return idx


def test_labels_from_file_names_and_csv(catalogue, tmp_path):
    assert label_from_filename("shoes/red_running-shoe_02.jpg") == "red running shoe"
    labels = load_labels(catalogue)
    assert sorted(labels.values()) == ["espresso cup", "red flower", "space rocket", "tabby cat", "wall clock"]
    (tmp_path / "names.csv").write_text("path,label\ntabby_cat_01.png,Chelsea the cat\n")
    named = load_labels(catalogue, tmp_path / "names.csv")
    assert "Chelsea the cat" in named.values() and "space rocket" in named.values()
    (tmp_path / "bad.csv").write_text("file,title\n")
    with pytest.raises(LookalikeError, match="'path' column"):
        load_labels(catalogue, tmp_path / "bad.csv")


def test_standardise():
    z = standardise(np.array([1.0, 2.0, 3.0]))
    assert z.mean() == pytest.approx(0) and z.std() == pytest.approx(1)
    assert np.all(standardise(np.array([0.5, 0.5])) == 0)


def test_fusion_is_the_weighted_mix_of_standardised_image_and_label_scores(catalogue, photos):
    labels = load_labels(catalogue)
    query_image = photos["coffee"].resize((300, 200))
    query = make_query(image=query_image)
    embedder = catalogue.embedder
    q = embedder.embed_images([query_image])[0]
    ids, matrix, _ = catalogue.catalog.all_vectors(catalogue.dim)
    image_scores = matrix.astype(np.float32) @ q
    label_scores = np.array([embedder.embed_texts([labels[int(i)]])[0] @ q for i in ids])
    for weight in (0.0, 0.3, 1.0):
        fused = weight * standardise(image_scores) + (1 - weight) * standardise(label_scores)
        expected = [int(ids[i]) for i in np.argsort(-fused)]
        matches = fused_search(catalogue, query, labels, image_weight=weight, k=5)
        assert [m.id for m in matches] == expected
        np.testing.assert_allclose([m.score for m in matches], np.sort(fused)[::-1], atol=1e-3)
    image_only = fused_search(catalogue, query, labels, image_weight=1.0, k=5)
    plain = catalogue.search(image=query_image, k=5)
    assert [m.id for m in image_only] == [m.id for m in plain.matches]
    assert image_only[0].label == "espresso cup"


def test_fusion_needs_a_text_model_and_a_sane_weight(sample_folder, catalogue, photos):
    idx = lookalike.open(sample_folder, model="phash")
    idx.update()
    with pytest.raises(ModalityError, match="images only"):
        fused_search(idx, make_query(image=photos["rocket"]), load_labels(idx))
    with pytest.raises(LookalikeError, match="between 0 and 1"):
        fused_search(catalogue, make_query(image=photos["rocket"]), load_labels(catalogue), image_weight=2)
