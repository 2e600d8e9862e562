from lookalike.models.registry import ALIASES, canonical_model_id
from lookalike.models.specs import FALLBACK, SPECS, spec_for, threshold_help, thresholds_for
from lookalike.thresholds import ThresholdInfo


def test_every_alias_has_a_spec_with_every_verbs_threshold():
    for alias in ALIASES:
        spec = spec_for(canonical_model_id(alias))
        assert spec is not None and alias in spec.aliases
        values = spec.thresholds
        assert 0 < values.examples <= 1 and 0 < values.dupes <= 1 and values.source
        assert (values.prompts is not None) == ("text" in spec.modalities)


def test_models_that_once_fell_back_silently_have_their_own_values():
    """siglip, clip-b16 and the DINOv2 sizes used to get the generic 0.90 without a word."""
    for alias in ("siglip", "clip-b16", "clip-l14", "dinov2-small", "dinov2-large", "dinov2-mean"):
        assert thresholds_for(canonical_model_id(alias)) is not FALLBACK
    base = thresholds_for("hf:facebook/dinov2-base#cls")
    assert thresholds_for(canonical_model_id("dinov2-small")).dupes == base.dupes
    assert "not measured" in thresholds_for(canonical_model_id("clip-b16")).source


def test_a_model_without_a_spec_says_its_threshold_is_generic():
    model = "hf:someone/some-vit"
    assert spec_for(model) is None and thresholds_for(model) is FALLBACK
    described = ThresholdInfo(FALLBACK.dupes, "fallback", model, default=FALLBACK.dupes).describe()
    assert "no default measured for hf:someone/some-vit" in described and "calibrate" in described


def test_help_texts_come_from_the_specs():
    dupes = threshold_help("dupes")
    assert "efficientnet-lite0 0.75" in dupes and "phash/dhash 0.6875" in dupes and "other models 0.9" in dupes
    assert "sscd/sscd-distilled/sscd-torchscript 0.7" in dupes
    prompts = threshold_help("prompts")
    assert "clip/clip-b16/clip-l14 0.24" in prompts and "efficientnet" not in prompts
    assert len({spec.id for spec in SPECS}) == len(SPECS)
