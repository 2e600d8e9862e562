import csv
import io

import numpy as np
import pytest

import lookalike
from lookalike.dupes import (
    DuplicateGroup,
    Member,
    apply_actions,
    find_duplicates,
    find_in_index,
    keeper_key,
    write_csv,
    write_html_report,
)
from lookalike.dupes_grouping import Groups
from lookalike.errors import LookalikeError

FAMILIES = ("chelsea", "astronaut", "coffee")


def _family(path: str) -> str:
    return path.split("/")[-1].split("_")[0].split(".")[0]


@pytest.fixture
def indexed(sample_folder):
    idx = lookalike.open(sample_folder, model="efficientnet-lite0")
    idx.update()
    return idx


@pytest.mark.slow
def test_edited_copies_group_with_their_original_and_nothing_else(indexed):
    groups = find_duplicates(indexed)
    assert len(groups) == 3
    for group in groups:
        families = {_family(m.relative_path) for m in group.members}
        assert len(families) == 1 and families <= set(FAMILIES)
        assert len(group.members) == 6  # original + resaved, onepixel, half, jpeg40, crop80
        assert all(m.score >= 0.75 for m in group.others)
        assert all(a.score >= b.score for a, b in zip(group.others, group.others[1:], strict=False))


@pytest.mark.slow
def test_metadata_only_copies_are_exact_and_pixel_edits_are_not(indexed):
    group = next(g for g in find_duplicates(indexed) if _family(g.keeper.relative_path) == "chelsea")
    exact = {m.relative_path for m in group.members if m.exact or m is group.keeper}
    assert exact == {"chelsea.png", "edited/chelsea_resaved.png"}
    assert indexed.catalog.details([group.keeper.id])[group.keeper.id].pixel_hash is not None


@pytest.mark.slow
def test_keeper_rules(indexed):
    group = next(g for g in find_duplicates(indexed, keep=["resolution", "size"]) if "coffee" in g.keeper.path)
    assert group.keeper.width * group.keeper.height == max(m.width * m.height for m in group.members)
    smallest = find_duplicates(indexed, keep=["shortest-path"])
    assert {g.keeper.relative_path for g in smallest} == {f"{f}.png" for f in FAMILIES}
    with pytest.raises(LookalikeError, match="unknown keep rule"):
        find_duplicates(indexed, keep=["prettiest"])


def test_keeper_key_orders_by_rules():
    big = Member(1, "a.jpg", "/a.jpg", 100, 100, 10, 5)
    heavy = Member(2, "b.jpg", "/b.jpg", 50, 50, 99, 1)
    assert sorted([heavy, big], key=lambda m: keeper_key(m, ["resolution"]))[0] is big
    assert sorted([big, heavy], key=lambda m: keeper_key(m, ["size"]))[0] is heavy
    assert sorted([big, heavy], key=lambda m: keeper_key(m, ["oldest"]))[0] is heavy


def test_chains_do_not_merge_unrelated_images():
    # a ~ b ~ c in a line: neighbours are close, the ends are not.
    angles = np.radians([0, 20, 40])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float16)
    groups = Groups(vectors)
    assert groups.try_merge(0, 1, min_score=0.9)
    assert not groups.try_merge(1, 2, min_score=0.9)  # c is too far from a
    assert groups.groups() == [[0, 1]]


@pytest.mark.slow
def test_verification_rescues_a_half_crop_the_embedding_misses(sample_folder, photos):
    rocket = photos["rocket"]
    w, h = rocket.size
    rocket.crop((w // 4, h // 4, w // 4 + w // 2, h // 4 + h // 2)).save(sample_folder / "rocket_crop50.png")
    idx = lookalike.open(sample_folder, model="efficientnet-lite0")
    idx.update()
    plain = find_duplicates(idx)
    assert not any("rocket" in m.relative_path for g in plain for m in g.members)
    verified = find_duplicates(idx, verify=True)
    rocket_group = next(g for g in verified if "rocket" in g.keeper.relative_path)
    assert {m.relative_path for m in rocket_group.members} == {"rocket.png", "rocket_crop50.png"}
    assert rocket_group.others[0].verified is True
    for group in verified:  # verification adds no cross-family groups
        assert len({_family(m.relative_path) for m in group.members}) == 1


@pytest.mark.slow
def test_cross_set_mode_reports_which_images_already_exist(indexed, tmp_path, photos):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    photos["chelsea"].resize((300, 200)).save(incoming / "cat from phone.jpg", quality=70)
    grey = np.full((200, 300, 3), 128, np.uint8)
    grey[50:150, 100:200] = (255, 0, 0)
    from PIL import Image

    Image.fromarray(grey).save(incoming / "red square.png")
    (incoming / "broken.jpg").write_bytes(b"nope")
    found = dict(find_in_index(indexed, incoming))
    assert _family(found["cat from phone.jpg"][0].relative_path) == "chelsea"
    assert found["red square.png"] == []
    assert "not an image" in found["broken.jpg"]


@pytest.mark.slow
def test_dry_run_moves_nothing_and_apply_moves_only_duplicates(indexed, tmp_path):
    groups = find_duplicates(indexed)
    before = sorted(p.name for p in indexed.root.rglob("*.png"))
    plan = apply_actions(groups, indexed.root, move_to=tmp_path / "dups", link_to=tmp_path / "review")
    assert len(plan) == 15 + 18 and sorted(p.name for p in indexed.root.rglob("*.png")) == before
    apply_actions(groups, indexed.root, move_to=tmp_path / "dups", link_to=tmp_path / "review", dry_run=False)
    for group in groups:
        assert (indexed.root / group.keeper.relative_path).exists()
        assert all((tmp_path / "dups" / m.relative_path).exists() for m in group.others)
    links = list((tmp_path / "review").rglob("*"))
    assert sum(p.is_symlink() for p in links) == 18
    assert indexed.update().removed == 15


@pytest.mark.slow
def test_reports(indexed, tmp_path):
    groups = find_duplicates(indexed)
    out = io.StringIO()
    write_csv(groups, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == 18 and sum(r["role"] == "keep" for r in rows) == 3
    write_html_report(groups, tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/jpeg;base64,") == 18 and html.count('class="keep"') == 3
    # The keepers are the originals, each with its reason; crops are outlined on them where they sit.
    assert {g.keeper.relative_path for g in groups} == {f"{f}.png" for f in FAMILIES}
    assert html.count("Kept: ") == 3 and all(r["note"] for r in rows if r["role"] == "keep")
    crops = [m for g in groups for m in g.others if "crop80" in m.relative_path]
    assert all(m.note.startswith("cropped copy of") and m.region["in"] == g.keeper.relative_path
               for g in groups for m in g.others if m in crops)
    assert html.count("<polygon") >= 3
    cat = next(g for g in groups if g.keeper.relative_path == "chelsea.png")
    crop = next(m for m in cat.others if "crop80" in m.relative_path)  # the centre 80 % of 451x300
    assert abs(crop.region["quad"][0][0] - 45) < 4 and abs(crop.region["quad"][2][1] - 270) < 4
    assert crop.as_dict()["region"] == crop.region


def test_tiny_or_empty_index_has_no_groups(tmp_path, photos):
    photos["moon"].save(tmp_path / "moon.png")
    idx = lookalike.open(tmp_path, model="phash")
    idx.update()
    assert find_duplicates(idx) == []
    assert DuplicateGroup(Member(1, "a", "/a", 1, 1, 1, 1)).as_dict()["duplicates"] == []


@pytest.mark.slow
def test_verify_survives_1x1_and_1xn_images(tmp_path, photos):
    """Fault 6: the resize to 800 px made a 0-row image and OpenCV crashed (CLI and API answered 500)."""
    from PIL import Image

    from lookalike.verify import verify_images

    ramp = np.tile(np.arange(2400, dtype=np.uint16) % 256, (1, 1)).astype(np.uint8)
    odd = {"dot_red.png": Image.new("RGB", (1, 1), "red"), "dot_blue.png": Image.new("RGB", (1, 1), "blue"),
           "strip_tall.png": Image.fromarray(ramp.T.copy()).convert("RGB"),
           "strip_wide.png": Image.fromarray(ramp).convert("RGB"),
           "strip_wide2.png": Image.fromarray(ramp[:, ::-1].copy()).convert("RGB")}
    for name, image in odd.items():
        image.save(tmp_path / name)
    for name in ("chelsea", "coffee"):
        photos[name].save(tmp_path / f"{name}.png")
        photos[name].crop((0, 0, photos[name].width // 2, photos[name].height)).save(tmp_path / f"{name}_half.png")
    idx = lookalike.open(tmp_path, model="efficientnet-lite0")
    assert idx.update().added == 9
    groups = find_duplicates(idx, verify=True)
    members = [m for g in groups for m in g.members]
    assert not [m for m in members if m.relative_path in odd and m.verified]  # nothing to match: never "verified"
    assert verify_images(odd["dot_red.png"], odd["dot_red.png"]).verified is False
    assert verify_images(odd["strip_tall.png"], photos["chelsea"]).matches == 0


def test_dupes_with_file_fact_keep_rules_never_imports_opencv(indexed):
    import subprocess
    import sys

    script = ("import sys, lookalike; from lookalike.dupes import find_duplicates; "
              "index = lookalike.Index.open(db=sys.argv[1], create=False); "
              "groups = find_duplicates(index, keep=['resolution', 'size']); "
              "print(len(groups), 'cv2' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", script, str(indexed.catalog.db_file)], capture_output=True,
                           text=True, check=True).stdout.split()
    assert int(found[0]) >= 1 and found[1] == "False"
