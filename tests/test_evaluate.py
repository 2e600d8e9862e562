import numpy as np
import pytest

from lookalike.errors import LookalikeError
from lookalike.evaluate import (
    CopyDetectionSet,
    _report,
    accuracy_at,
    calibrated_thresholds,
    evaluate_model,
    evaluate_retrieval,
    generate_copy_detection_set,
    load_disc21_set,
    markdown_table,
    micro_average_precision,
    recall_at_precision,
    store_thresholds,
    write_outputs,
)


def test_micro_ap_perfect_ranking_is_one():
    assert micro_average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 1, 0]), positives=2) == 1.0


def test_micro_ap_known_mix():
    # ranks: hit, miss, hit → precisions at the hits 1 and 2/3; two of three positives found
    scores, correct = np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])
    assert micro_average_precision(scores, correct, positives=3) == pytest.approx((1 + 2 / 3) / 3)
    assert micro_average_precision(scores, correct, positives=0) == 0.0


def test_recall_at_precision_and_its_threshold():
    scores = np.array([0.95, 0.9, 0.85, 0.8, 0.7])
    correct = np.array([1, 1, 1, 0, 1])
    recall, threshold = recall_at_precision(scores, correct, positives=5, target=0.9)
    assert recall == pytest.approx(3 / 5) and threshold == 0.85
    assert recall_at_precision(np.array([0.5]), np.array([0]), 1) == (0.0, None)


def test_accuracy_at_k_ignores_negative_queries():
    ranked = [["a", "b", "c"], ["b", "a", "c"], ["c", "b", "a"]]
    assert accuracy_at(ranked, ["a", "a", None], 1) == 0.5
    assert accuracy_at(ranked, ["a", "a", None], 3) == 1.0


def test_report_on_a_hand_made_ranking():
    dataset = CopyDetectionSet([], [], ["R1", "R0", None], ["crop", "crop", "flip"])
    dataset.references = [type("P", (), {"stem": s})() for s in ("R0", "R1")]
    top = np.array([[1, 0], [1, 0], [0, 1]])
    scores = np.array([[0.9, 0.2], [0.8, 0.7], [0.3, 0.1]])
    report = _report("toy", dataset, top, scores, speed=None)
    assert report.accuracy_at_1 == 0.5 and report.accuracy_at_3 == 1.0
    # pooled: 0.9 hit, 0.8 miss, 0.7 hit, 0.3 miss, 0.2 miss, 0.1 miss → (1 + 2/3) / 2
    assert report.micro_ap == pytest.approx((1 + 2 / 3) / 2)
    assert report.per_family == {"crop": 0.5}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory, photos):
    originals = tmp_path_factory.mktemp("originals")
    for name in ("chelsea", "rocket", "coffee", "astronaut", "coins", "flower", "china", "camera"):
        photos[name].save(originals / f"{name}.png")
    out = tmp_path_factory.mktemp("eval")
    dataset = generate_copy_detection_set(originals, out / "data", seed=1, negative_fraction=0.25,
                                          families=["resaved", "resize-25", "crop-50", "flip", "combo"])
    return dataset, out


@pytest.mark.slow
def test_generated_set_is_seeded_with_negatives(small_set, tmp_path, photos):
    dataset, _ = small_set
    assert len(dataset.references) == 6 and len(dataset.queries) == 40
    assert sum(t is None for t in dataset.truth) == 10
    assert set(dataset.families) == {"resaved", "resize-25", "crop-50", "flip", "combo"}
    with pytest.raises(LookalikeError, match="unknown edit families"):
        generate_copy_detection_set(dataset.references[0].parent, tmp_path, families=["sepia"])


@pytest.mark.slow
def test_embedding_beats_file_md5_and_phash_on_edited_copies(small_set):
    dataset, out = small_set
    efficientnet = evaluate_model(dataset, "efficientnet-lite0")
    phash = evaluate_model(dataset, "phash")
    md5 = evaluate_model(dataset, "md5")
    assert md5.accuracy_at_1 == 0.0 and md5.micro_ap == 0.0  # every query file differs from its reference
    assert efficientnet.per_family["resize-25"] == 1.0 and md5.per_family["resize-25"] == 0.0
    assert efficientnet.accuracy_at_1 >= 0.9 and efficientnet.micro_ap > phash.micro_ap
    assert efficientnet.threshold_at_90_precision is not None and efficientnet.images_per_second > 0
    write_outputs([efficientnet, phash, md5], out)
    assert (out / "report.md").read_text().startswith("| model |")
    assert {"precision_recall.png", "per_edit.png", "report.json"} <= {p.name for p in out.iterdir()}
    assert "| resize-25 |" in markdown_table([efficientnet, md5])
    thresholds = calibrated_thresholds([efficientnet, md5])
    assert set(thresholds) == {"efficientnet-lite0"}


@pytest.mark.slow
def test_geometric_verification_row_rescues_crops(small_set):
    dataset, _ = small_set
    plain = evaluate_model(dataset, "phash")
    verified = evaluate_model(dataset, "phash", verify=True)
    assert verified.model == "phash+verify"
    assert verified.per_family["crop-50"] >= plain.per_family["crop-50"]


def test_disc21_layout(tmp_path, small_set):
    dataset, _ = small_set
    queries, references = tmp_path / "q", tmp_path / "r"
    queries.mkdir()
    references.mkdir()
    for path in dataset.references:
        (references / path.name).write_bytes(path.read_bytes())
    for path in dataset.queries[:5]:
        (queries / path.name).write_bytes(path.read_bytes())
    pairs = zip(dataset.queries[:5], dataset.truth[:5], strict=True)
    rows = ["query_id,reference_id"] + [f"{q.stem},{t or ''}" for q, t in pairs]
    (tmp_path / "gt.csv").write_text("\n".join(rows) + "\n")
    loaded = load_disc21_set(queries, references, tmp_path / "gt.csv")
    assert [q.name for q in loaded.queries] == sorted(q.name for q in dataset.queries[:5])
    truth = dict(zip([q.stem for q in dataset.queries], dataset.truth, strict=True))
    assert loaded.truth == [truth[q.stem] for q in loaded.queries]


@pytest.mark.slow
def test_retrieval_metrics_on_labelled_folders(tmp_path, photos, tiny_clip_dir):
    for name in ("chelsea", "rocket", "coffee"):
        (tmp_path / name).mkdir()
        image = photos[name]
        for i, keep in enumerate((1.0, 0.8, 0.6)):
            w, h = int(image.width * keep), int(image.height * keep)
            image.crop((0, 0, w, h)).save(tmp_path / name / f"{i}.png")
    result = evaluate_retrieval(tmp_path, "efficientnet-lite0")
    assert result["precision_at_1"] == 1.0 and result["mAP"] > 0.9 and result["recall_at_5"] == 1.0
    assert result["classes"] == 3 and result["images"] == 9
    fused = evaluate_retrieval(tmp_path, str(tiny_clip_dir), labels=True)
    assert fused["model"].endswith("+labels") and 0 <= fused["mAP"] <= 1


def test_thresholds_are_stored_in_the_index_and_used_by_dupes(sample_folder):
    import lookalike
    from lookalike.thresholds import threshold_info

    idx = lookalike.open(sample_folder, model="phash")
    store_thresholds(idx, {"phash": 0.8})
    assert threshold_info("phash", idx.catalog).value == 0.8 and idx.threshold().source == "calibrated"


def test_unreadable_original_is_skipped_with_a_warning(tmp_path, photos):
    from lookalike.evaluate import generate_copy_detection_set

    originals = tmp_path / "originals"
    originals.mkdir()
    for name in ("coffee", "chelsea", "rocket"):
        photos[name].save(originals / f"{name}.jpg")
    (originals / "empty.jpg").write_bytes(b"")
    with pytest.warns(UserWarning, match="empty.jpg"):
        dataset = generate_copy_detection_set(originals, tmp_path / "set", families=["flip"])
    assert len(dataset.queries) == 3
