"""The real web app on a fresh copy of the sample folder, for the server tests (TestClient, no socket)."""

import shutil

from fastapi.testclient import TestClient

import lookalike
from lookalike.server.app import create_app


def serve_copy(folder, sample_folder_template, model: str):
    """Yields (client, folder): the sample photos copied to `folder`, indexed with `model`, served."""
    shutil.copytree(sample_folder_template, folder)
    idx = lookalike.open(folder, model=model)
    idx.update()
    with TestClient(create_app(idx, allowed_hosts=["testserver"])) as client:
        yield client, folder
    idx.close()
