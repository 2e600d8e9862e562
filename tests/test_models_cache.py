"""The model cache folder is found from the checkpoint's files alone, and changes when the weights change."""

import os

from lookalike.models.cache import ModelCache, checkpoint_folder, checkpoint_identity, hardware_tag


def test_a_local_checkpoint_is_identified_by_its_files(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    checkpoint = tmp_path / "my-clip"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    (checkpoint / "notes.txt").write_text("not part of the model")
    first = ModelCache.for_checkpoint("hf:/x/my-clip", checkpoint)
    assert first.folder.parent == tmp_path / "cache" / "onnx" and first.folder.name.startswith("my-clip-")
    (checkpoint / "notes.txt").write_text("edited notes do not matter")
    assert ModelCache.for_checkpoint("hf:/x/my-clip", checkpoint).folder == first.folder
    (checkpoint / "model.safetensors").write_bytes(b"re-saved weights")
    assert ModelCache.for_checkpoint("hf:/x/my-clip", checkpoint).folder != first.folder
    assert ModelCache.for_checkpoint("hf:/x/my-clip#mean", checkpoint).folder != first.folder


def test_a_hub_snapshot_is_found_offline_and_identified_by_its_commit(tmp_path, monkeypatch):
    """The layout huggingface_hub writes: refs/main holds the commit, snapshots/<commit>/ the files."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    commit = "3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268"
    repo = tmp_path / "models--openai--clip-vit-base-patch32"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    assert checkpoint_folder("openai/clip-vit-base-patch32") == snapshot
    assert checkpoint_identity(snapshot) == f"models--openai--clip-vit-base-patch32@{commit}"
    (snapshot / "tokenizer.json").write_text("{}")  # files downloaded later do not move the cache
    assert checkpoint_identity(snapshot) == f"models--openai--clip-vit-base-patch32@{commit}"


def test_json_files_round_trip_and_missing_ones_read_as_none(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path))
    cache = ModelCache("efficientnet-lite0", "w:1:2")
    assert cache.read_json("model.json") is None
    cache.write_json("model.json", {"dim": 1280, "crop": [224, 224]})
    assert cache.read_json("model.json") == {"dim": 1280, "crop": [224, 224]}
    assert sorted(os.listdir(cache.folder)) == ["model.json"]  # no temporary file left behind


def test_checkpoint_folder_of_a_directory_and_of_an_uncached_hub_id(tmp_path):
    assert checkpoint_folder(str(tmp_path)) == tmp_path
    assert checkpoint_folder("openai/not-a-model-in-any-cache") is None
    assert len(hardware_tag()) == 8 and hardware_tag() == hardware_tag()
