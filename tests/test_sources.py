"""Sources: local folders, fsspec locations (memory://; s3://, gs:// and az:// against emulators started here),
URL lists."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lookalike
from lookalike.errors import IndexUnusableError
from lookalike.sources import FsspecSource, LocalSource, UrlListSource, open_source


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_open_source_picks_the_kind(tmp_path):
    assert isinstance(open_source(tmp_path), LocalSource)
    assert isinstance(open_source("memory://bucket/photos"), FsspecSource)
    assert isinstance(open_source(tmp_path / "urls.txt"), UrlListSource)


def test_local_source_matches_the_scanner(sample_folder):
    source = open_source(sample_folder)
    files = source.scan().files
    assert len(files) == 31 and source.full_path(files[0].relpath) == str(sample_folder / files[0].relpath)


@pytest.fixture
def memory_photos(photos):
    import fsspec

    fs = fsspec.filesystem("memory")
    base = "/lookalike-test-photos"
    if fs.exists(base):
        fs.rm(base, recursive=True)
    for name in ("chelsea", "rocket", "coffee", "coins"):
        fs.pipe(f"{base}/album/{name}.png", _png(photos[name]))
    fs.pipe(f"{base}/.hidden/secret.png", _png(photos["moon"]))
    fs.pipe(f"{base}/broken.jpg", b"not a jpeg")
    yield fs, "memory://" + base
    fs.rm(base, recursive=True)


def test_index_and_search_a_memory_filesystem(memory_photos, tmp_path, photos):
    fs, url = memory_photos
    with pytest.raises(IndexUnusableError, match="--db"):
        lookalike.open(url, model="efficientnet-lite0")
    idx = lookalike.open(url, db=tmp_path / "memory.db", model="efficientnet-lite0")
    report = idx.update()
    assert report.added == 4 and dict(report.skipped).keys() == {"broken.jpg"}
    match = idx.search(image=photos["rocket"].resize((200, 150)), k=1).matches[0]
    assert match.relative_path == "album/rocket.png" and match.path == f"{url}/album/rocket.png"
    fs.mv(url.removeprefix("memory://") + "/album/coins.png", url.removeprefix("memory://") + "/coins-moved.png")
    again = idx.update()
    assert (again.moved, again.embedded, again.unchanged) == (1, 0, 3)
    assert idx.info().root == url


def test_remote_reads_are_retried_then_reported(memory_photos, monkeypatch):
    fs, url = memory_photos
    source = FsspecSource(url)
    calls = {"n": 0}
    original = source.fs.cat_file

    def flaky(path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ConnectionError("connection reset")
        return original(path, *args, **kwargs)

    monkeypatch.setattr(source.fs, "cat_file", flaky)
    monkeypatch.setattr("lookalike.sources.time.sleep", lambda s: None)
    file = next(f for f in source.scan().files if f.relpath.endswith("chelsea.png"))
    assert len(source.digest(file)) == 32 and calls["n"] == 3
    monkeypatch.setattr(source.fs, "cat_file", lambda *a, **k: (_ for _ in ()).throw(TimeoutError("timed out")))
    with pytest.raises(OSError, match="timed out"):
        source.image_input("album/rocket.png")


def test_url_list_source(tmp_path, photos, local_http, efficientnet):
    base = local_http({"/cat.png": _png(photos["chelsea"]), "/rocket.png": _png(photos["rocket"])})
    listing = tmp_path / "urls.csv"
    listing.write_text(f"url,title\n{base}/cat.png,cat\n{base}/rocket.png,rocket\n{base}/missing.png,gone\n")
    idx = lookalike.open(listing, db=tmp_path / "urls.db", model="efficientnet-lite0")
    report = idx.update()
    assert report.added == 2 and len(report.skipped) == 1 and "missing.png" in report.skipped[0][0]
    match = idx.search(image=photos["chelsea"], k=1).matches[0]
    assert match.path == f"{base}/cat.png"
    assert idx.update().unchanged == 2  # listed URLs are not downloaded again


AZURITE = Path(__file__).parent / "emulators" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account key (public, in Microsoft's documentation)
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"emulator on port {port} did not start")


@pytest.fixture(params=["s3", "gs", "az"])
def object_store(request, monkeypatch):
    """(scheme, env) of a real object-store API served on this machine: S3 by moto's server, GCS by
    gcp-storage-emulator, Azure Blob by Azurite (installed by `make test` from npm). The bucket is `shop`."""
    if request.param == "s3":
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
        stop = server.stop
    elif request.param == "gs":
        from gcp_storage_emulator.server import create_server

        port = _free_port()
        server = create_server("127.0.0.1", port, in_memory=True, default_bucket="shop")
        server.start()
        # the emulator speaks JSON only: no gRPC probe for hierarchical-namespace buckets
        env = {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
        stop = server.stop
    else:
        if not AZURITE.exists():
            pytest.skip("Azurite is not installed: run `make test` (npm install in tests/emulators)")
        port = _free_port()
        process = subprocess.Popen([str(AZURITE), "--inMemoryPersistence", "--silent", "--skipApiVersionCheck",
                                    "--blobHost", "127.0.0.1", "--blobPort", str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(port)
        env = {"AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
               f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"}
        stop = process.terminate
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield request.param, env
    stop()


@pytest.mark.slow
def test_cli_indexes_a_bucket_on_each_object_store(object_store, tmp_path, photos):
    import fsspec

    scheme, store_env = object_store
    fs = fsspec.filesystem(scheme, skip_instance_cache=True, **({"token": "anon"} if scheme == "gs" else {}))
    if scheme != "gs":  # the GCS emulator made it already
        fs.mkdir("shop")
    for name in ("chelsea", "rocket", "coffee"):
        fs.pipe(f"shop/catalogue/{name}.png", _png(photos[name]))
    env = {**os.environ, **store_env, "HF_HUB_OFFLINE": "1"}

    def lookalike_cli(*args):
        result = subprocess.run([sys.executable, "-m", "lookalike.cli", *map(str, args)], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    db = tmp_path / "shop.db"
    first = json.loads(lookalike_cli("index", f"{scheme}://shop/catalogue", "--db", db,
                                     "--model", "efficientnet-lite0", "--json"))
    assert first["added"] == 3
    fs.copy("shop/catalogue/rocket.png", "shop/catalogue/copy-of-rocket.png")
    fs.rm("shop/catalogue/coffee.png")
    second = json.loads(lookalike_cli("index", f"{scheme}://shop/catalogue", "--db", db, "--json"))
    # the copy is recognised from the listing's content MD5 / ETag: nothing downloaded, nothing embedded
    assert (second["reused"], second["removed"], second["embedded"]) == (1, 1, 0)
    query = tmp_path / "q.jpg"
    photos["chelsea"].resize((225, 150)).save(query)
    [line] = lookalike_cli("search", query, "--db", db, "-k", "1", "--json").splitlines()
    assert json.loads(line)["results"][0]["path"] == f"{scheme}://shop/catalogue/chelsea.png"
