import numpy as np
import pytest

from lookalike.errors import QueryError
from lookalike.search import Query, Term, make_query, parse_query, parse_text_term, query_vector


def test_rclip_style_expressions(tmp_path):
    pool = tmp_path / "pool.jpg"
    pool.write_bytes(b"x")
    query = parse_query(f"2:golden retriever + {pool} - fruit")
    assert query.terms == (
        Term(2.0, "text", "golden retriever"),
        Term(1.0, "image", str(pool)),
        Term(-1.0, "text", "fruit"),
    )


def test_hyphens_inside_words_and_paths_are_not_operators(tmp_path):
    path = tmp_path / "holiday - beach.png"
    path.write_bytes(b"x")
    assert parse_query(str(path)).terms == (Term(1.0, "image", str(path)),)
    assert parse_query("a t-shirt").terms == (Term(1.0, "text", "a t-shirt"),)
    assert parse_query("https://example.com/a.jpg").terms[0].kind == "image"


def test_missing_image_file_is_an_error_not_a_text_search():
    with pytest.raises(QueryError, match="image file not found"):
        parse_query("./holiday/missing.jpg")


def test_text_terms_with_signs_and_weights():
    assert parse_text_term("-night").terms == (Term(-1.0, "text", "night"),)
    assert parse_text_term("0.5:sunset").terms == (Term(0.5, "text", "sunset"),)
    combined = make_query(text=["red bus", "-night"])
    assert [t.weight for t in combined.terms] == [1.0, -1.0]
    with pytest.raises(QueryError):
        make_query()


class FakeTextEmbedder:
    """Deterministic unit vectors per word: enough to check the arithmetic of combined queries."""

    dim = 3
    modalities = frozenset({"image", "text"})
    basis = {"red": [1, 0, 0], "bus": [0, 1, 0], "night": [0, 0, 1]}

    def embed_texts(self, texts):
        return np.array([self.basis[t] for t in texts], np.float32)


def test_query_vector_is_the_normalised_weighted_sum():
    vector = query_vector(FakeTextEmbedder(), make_query(text=["2:red", "bus", "-night"]))
    np.testing.assert_allclose(vector, np.array([2, 1, -1]) / np.sqrt(6), rtol=1e-6)


def test_terms_that_cancel_out_are_refused():
    query = Query((Term(1.0, "text", "red"), Term(-1.0, "text", "red")), "red - red")
    with pytest.raises(QueryError, match="cancel out"):
        query_vector(FakeTextEmbedder(), query)


def test_an_indexed_large_jpeg_is_its_own_first_hit_at_1(tmp_path, photos):
    """Indexing decodes large JPEGs in draft mode; queries must decode the same way, or the file ranks itself
    below an edited copy (0.975 in the issue)."""
    from PIL import Image

    import lookalike

    folder = tmp_path / "photos"
    folder.mkdir()
    big = photos["chelsea"].resize((3608, 2400), Image.Resampling.LANCZOS)
    big.save(folder / "big.jpg", quality=92)
    big.resize((1804, 1200), Image.Resampling.LANCZOS).save(folder / "half.jpg", quality=92)
    for name in ("astronaut", "coffee", "rocket"):
        photos[name].save(folder / f"{name}.jpg", quality=92)
    with lookalike.open(folder, model="efficientnet-lite0") as idx:
        idx.update()
        first = idx.search(image=folder / "big.jpg", k=3).matches[0]
    assert first.relative_path == "big.jpg" and first.score == pytest.approx(1.0, abs=1e-4)


def test_k_below_one_is_an_error(tmp_path, sample_folder):
    import lookalike

    with lookalike.open(sample_folder, model="efficientnet-lite0") as idx:
        idx.update()
        with pytest.raises(QueryError, match="k must be at least 1"):
            idx.search(image=sample_folder / "chelsea.png", k=0)


@pytest.mark.parametrize(("scores", "threshold", "expected"), [
    ([1.0, 0.98, 0.94, 0.16, 0.14], 0.75, 3),  # image query: the near-duplicate threshold
    ([0.86, 0.85, 0.83, 0.32, 0.30, 0.29], None, 3),  # a clear gap
    ([0.31, 0.30, 0.29, 0.28, 0.27], None, None),  # a smooth decline: no break
    ([0.60, 0.58, 0.30, 0.29], 0.75, 2),  # nothing clears the threshold: the gap rule
])
def test_break_point_marks_where_results_stop_being_matches(scores, threshold, expected):
    from lookalike.search import break_point

    found = break_point(scores, threshold)
    assert (found[0] if found else None) == expected
