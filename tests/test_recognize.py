import shutil

import numpy as np
import pytest

from lookalike.errors import LookalikeError
from lookalike.images import load_image
from lookalike.recognize import CACHE_DIRNAME, UNKNOWN, load_categories

CATEGORIES = ("chelsea", "rocket", "coffee", "astronaut", "coins", "flower")


def _left(image):
    return image.crop((0, 0, image.width * 3 // 5, image.height))


def _right(image):
    return image.crop((image.width * 2 // 5, 0, image.width, image.height))


@pytest.fixture
def category_folder(tmp_path, photos):
    """Each category's examples: the left 60% of a photo, plus a half-size copy. Held out: the right 60%."""
    folder = tmp_path / "categories"
    for name in CATEGORIES:
        (folder / name).mkdir(parents=True)
        _left(photos[name]).save(folder / name / "left.png")
        half = _left(photos[name]).resize((photos[name].width * 3 // 10, photos[name].height // 2))
        half.save(folder / name / "left-small.jpg")
    return folder


def test_held_out_views_are_assigned_to_their_category(category_folder, tmp_path, photos, efficientnet):
    queries = []
    for name in CATEGORIES:
        _right(photos[name]).save(tmp_path / f"{name}-right.png")
        queries.append(tmp_path / f"{name}-right.png")
    results = load_categories(category_folder, efficientnet).recognize(queries)
    assert [r.category for r in results] == list(CATEGORIES)
    assert all(r.accepted and r.score >= r.threshold for r in results)
    assert all(r.runner_up != r.category and r.runner_up_score < r.score for r in results)


def test_unrelated_photo_is_unknown(category_folder, tmp_path, photos, efficientnet):
    photos["brick"].save(tmp_path / "brick.png")
    [result] = load_categories(category_folder, efficientnet).recognize([tmp_path / "brick.png"])
    assert result.label == UNKNOWN and result.score < result.threshold and result.category in CATEGORIES


def test_thresholds_from_settings_file_and_override(category_folder, tmp_path, photos, efficientnet):
    (category_folder / "categories.yaml").write_text("rocket:\n  threshold: 0.999\n")
    _right(photos["rocket"]).save(tmp_path / "r.png")
    categories = load_categories(category_folder, efficientnet)
    [strict] = categories.recognize([tmp_path / "r.png"])
    assert strict.category == "rocket" and strict.label == UNKNOWN and strict.threshold == 0.999
    [loose] = categories.recognize([tmp_path / "r.png"], threshold=0.1)
    assert loose.label == "rocket"


def test_example_vectors_are_cached_and_only_changes_re_embedded(category_folder, photos, efficientnet):
    from tests.conftest import CountingEmbedder

    counting = CountingEmbedder(efficientnet)
    load_categories(category_folder, counting)
    assert counting.images_embedded == 12 and (category_folder / CACHE_DIRNAME).is_dir()
    load_categories(category_folder, counting)
    assert counting.images_embedded == 12
    photos["clock"].save(category_folder / "coins" / "extra.png")
    shutil.rmtree(category_folder / "flower")
    again = load_categories(category_folder, counting)
    assert counting.images_embedded == 13
    assert sorted(c.name for c in again.categories) == sorted(set(CATEGORIES) - {"flower"})


def test_learn_files_an_accepted_image_with_its_vector(category_folder, tmp_path, photos, efficientnet):
    from tests.conftest import CountingEmbedder

    _right(photos["coffee"]).save(tmp_path / "cup.png")
    counting = CountingEmbedder(efficientnet)
    categories = load_categories(category_folder, counting)
    [result] = categories.recognize([tmp_path / "cup.png"])
    learned = categories.learn(tmp_path / "cup.png", result)
    assert learned == category_folder / "coffee" / "cup.png" and learned.exists()
    before = counting.images_embedded
    reloaded = load_categories(category_folder, counting)
    assert counting.images_embedded == before  # the learned vector came from the cache
    [again] = reloaded.recognize([tmp_path / "cup.png"])
    assert again.score > 0.999 and again.nearest == "coffee/cup.png"
    photos["brick"].save(tmp_path / "brick.png")
    [unknown] = reloaded.recognize([tmp_path / "brick.png"])
    with pytest.raises(LookalikeError, match="not recognised"):
        reloaded.learn(tmp_path / "brick.png", unknown)


def test_text_prompts_from_yaml_and_csv(tmp_path, tiny_clip_dir, photos):
    from lookalike.models.registry import load_embedder

    clip = load_embedder(str(tiny_clip_dir))
    (tmp_path / "prompts.yaml").write_text(
        "cat: [a photo of a cat, a kitten]\nrocket:\n  prompts: [a rocket launch]\n  threshold: -1\n")
    (tmp_path / "prompts.csv").write_text("category,prompt\ncat,a photo of a cat\nrocket,a rocket launch\n")
    photos["rocket"].save(tmp_path / "rocket.png")
    for source in ("prompts.yaml", "prompts.csv"):
        categories = load_categories(tmp_path / source, clip)
        assert {c.name: c.sources for c in categories.categories}["cat"][0] == "a photo of a cat"
        [result] = categories.recognize([tmp_path / "rocket.png"])
        assert result.category in ("cat", "rocket") and -1 <= result.score <= 1
        decoded = load_image(tmp_path / "rocket.png", draft_size=clip.draft_size)  # as recognize decodes files
        expected = np.max(clip.embed_texts(categories.categories[0].sources) @ clip.embed_images([decoded])[0])
        assert {c.name: c for c in categories.categories}["cat"].vectors.shape[1] == clip.dim
        assert result.score >= expected - 1e-4
    with pytest.raises(LookalikeError, match="YAML/CSV"):
        load_categories(tmp_path / "missing.txt", clip)
