import pytest

from lookalike.settings import IndexSettings, SettingsError, parse_size


def test_sizes_are_read_with_binary_suffixes():
    assert parse_size("8G") == 8 * 2**30
    assert parse_size("512m") == 512 * 2**20
    assert parse_size("1.5GiB") == int(1.5 * 2**30)
    assert parse_size("300K") == 300 * 2**10 and parse_size("1000") == 1000 and parse_size(42) == 42
    with pytest.raises(SettingsError, match="not a size: write e.g. 8G"):
        parse_size("lots")


def test_settings_round_trip_and_keep_what_was_not_given():
    stored = IndexSettings(memory_budget=2**30, exact_limit=10)
    assert IndexSettings.from_dict(stored.as_dict()) == stored
    assert stored.changed(memory_budget=None, store="milvus-lite:///x.db/c") == IndexSettings(
        memory_budget=2**30, exact_limit=10, store="milvus-lite:///x.db/c")
    assert IndexSettings.from_dict({"exact_limit": 5, "from_a_later_version": 1}) == IndexSettings(exact_limit=5)
    assert IndexSettings.from_dict(None) == IndexSettings()


def test_impossible_settings_are_refused():
    with pytest.raises(SettingsError, match="positive"):
        IndexSettings(memory_budget=0)
    with pytest.raises(SettingsError):
        IndexSettings(shard_min_size=0)


def test_runtime_and_models_are_settings():
    stored = IndexSettings(runtime="onnx", models=["sscd"], copy_variants=["dihedral"])
    assert stored.models == ("sscd",) and stored.copy_variants == ("dihedral",)
    assert IndexSettings.from_dict(stored.as_dict()) == stored
    with pytest.raises(SettingsError, match="unknown runtime 'tpu'"):
        IndexSettings(runtime="tpu")
