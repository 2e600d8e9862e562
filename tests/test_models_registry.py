import pytest

from lookalike.errors import ModelUnavailableError
from lookalike.models.registry import canonical_model_id, load_embedder


def test_aliases_and_canonical_ids(tmp_path):
    assert canonical_model_id("clip") == "hf:openai/clip-vit-base-patch32"
    assert canonical_model_id("dinov2") == "hf:facebook/dinov2-base#cls"
    assert canonical_model_id("dinov2-mean") == "hf:facebook/dinov2-base#mean"
    assert canonical_model_id("facebook/dinov2-small") == "hf:facebook/dinov2-small#cls"
    assert canonical_model_id("google/siglip-base-patch16-224") == "hf:google/siglip-base-patch16-224"
    assert canonical_model_id(str(tmp_path)) == f"hf:{tmp_path.resolve()}"
    assert canonical_model_id(canonical_model_id("clip")) == canonical_model_id("clip")


def test_unknown_model_names_list_the_choices():
    with pytest.raises(ModelUnavailableError, match="efficientnet-lite0"):
        canonical_model_id("not-a-model")


def test_load_embedder_caches_per_process(tiny_clip_dir):
    first = load_embedder(str(tiny_clip_dir))
    assert first is load_embedder(f"hf:{tiny_clip_dir}")
    assert first.id == f"hf:{tiny_clip_dir}"
    assert load_embedder("phash").id == "phash"
