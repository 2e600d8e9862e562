"""search --verify through the Python API and the REST API, on real photos and a tight crop."""

import io

import numpy as np
import pytest

import lookalike

BOX = (150, 150, 348, 348)  # 15 % of the astronaut photo


@pytest.fixture(scope="module")
def sample_folder(tmp_path_factory, sample_folder_template, photos):
    import shutil

    folder = tmp_path_factory.mktemp("rerank") / "photos"
    shutil.copytree(sample_folder_template, folder)
    photos["astronaut"].crop(BOX).save(folder / "edited" / "astronaut_tight.jpg", quality=90)
    return folder


@pytest.fixture(scope="module")
def index(sample_folder):
    idx = lookalike.open(sample_folder, model="efficientnet-lite0")
    idx.update()
    yield idx
    idx.close()


@pytest.mark.slow
def test_verified_copies_come_first_with_where_they_sit(index, sample_folder):
    plain = index.search(image=sample_folder / "astronaut.png", k=8)
    verified = index.search(image=sample_folder / "astronaut.png", k=8, verify=True)
    flags = [bool(m.verification and m.verification["verified"]) for m in verified.matches]
    assert flags == sorted(flags, reverse=True)  # verified ones first
    found = {m.relative_path: m for m in verified.matches}
    tight = found["edited/astronaut_tight.jpg"]
    assert tight.verification["verified"] and tight.verification["region"]["in"] == "a"  # inside the query
    expected = np.array([[150, 150], [348, 150], [348, 348], [150, 348]])
    assert np.abs(np.array(tight.verification["region"]["quad"]) - expected).max() < 4
    # Nothing the embedding accepted is lost: every plain match above the threshold is still there.
    threshold = index.threshold().value
    assert {m.relative_path for m in plain.matches if m.score >= threshold} <= set(found)
    assert verified.as_dict()["results"][0]["verification"]["verified"]


def test_verify_needs_one_query_image(index):
    from lookalike.errors import QueryError

    with pytest.raises(QueryError, match="exactly one image"):
        index.search(text="a cat", k=3, verify=True)


def test_rest_search_with_verify(index, sample_folder):
    from fastapi.testclient import TestClient

    from lookalike.server.app import create_app

    data = (sample_folder / "edited" / "astronaut_tight.jpg").read_bytes()
    with TestClient(create_app(index, upload_limit=5 * 1024 * 1024, allowed_hosts=["testserver"])) as client:
        response = client.post("/api/search/image", files={"file": ("tight.jpg", io.BytesIO(data), "image/jpeg")},
                               data={"k": "5", "verify": "true"})
    assert response.status_code == 200, response.text
    top = response.json()["results"][0]
    assert top["relative_path"] in ("edited/astronaut_tight.jpg", "astronaut.png")
    original = next(r for r in response.json()["results"] if r["relative_path"] == "astronaut.png")
    assert original["verification"]["verified"] and original["verification"]["region"]["in"] == "b"
