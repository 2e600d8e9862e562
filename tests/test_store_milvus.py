"""The Milvus store against real engines (no mocks): Milvus Lite, and a Milvus standalone server started here
(HNSW, updates and deletes, a server killed in the middle of a sync): the same answers as the embedded store."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

import lookalike  # noqa: E402
from lookalike.errors import LookalikeError  # noqa: E402
from lookalike.store.milvus import digests, index_type_for, parse_store_uri  # noqa: E402


def test_store_uris():
    assert parse_store_uri("milvus://db.example:19531/photos") == ("http://db.example:19531", "photos")
    assert parse_store_uri("milvus://db.example/photos") == ("http://db.example:19530", "photos")
    assert parse_store_uri("milvus-lite:///data/m.db/photos") == ("/data/m.db", "photos")
    for bad in ("milvus://host", "milvus-lite:///data/photos", "redis://x/y"):
        with pytest.raises(LookalikeError):
            parse_store_uri(bad)


def test_index_type_follows_the_collection_size():
    assert index_type_for(49_999, lite=False) == "FLAT" and index_type_for(50_000, lite=False) == "HNSW"
    assert index_type_for(50_000, lite=True) == "IVF_FLAT"


def test_digests_tell_a_replaced_vector_from_the_stored_one():
    vectors = np.random.default_rng(0).standard_normal((1000, 512)).astype(np.float16)
    marks = digests(vectors)
    assert marks.dtype == np.int64 and len(set(marks.tolist())) == 1000
    changed = vectors.copy()
    changed[7, 300] = np.float16(changed[7, 300] + np.float16(0.01))
    assert (digests(changed) != marks).tolist() == [i == 7 for i in range(1000)]
    assert (digests(vectors.astype(np.float32)) == marks).all()  # the catalog's float16 is what is digested


@pytest.mark.slow
def test_milvus_lite_gives_the_embedded_results_and_follows_changes(sample_folder, tmp_path, photos):
    embedded = lookalike.open(sample_folder, db=tmp_path / "embedded.db", model="efficientnet-lite0")
    embedded.update()
    store = f"milvus-lite://{tmp_path}/milvus.db/photos"
    idx = lookalike.Index.open(sample_folder, db=tmp_path / "milvus-index.db", model="efficientnet-lite0",
                               store=store)
    idx.update()
    assert idx.info().store == store
    query = photos["coffee"].resize((300, 200))
    ours = idx.search(image=query, k=8)
    theirs = embedded.search(image=query, k=8)
    assert ours.method == "milvus"
    # the same images (ties between pixel-identical copies may come in either order) with the same scores
    assert {m.relative_path for m in ours.matches[:6]} == {m.relative_path for m in theirs.matches[:6]}
    np.testing.assert_allclose([m.score for m in ours.matches], [m.score for m in theirs.matches], atol=2e-3)

    photos["rocket"].transpose(0).save(sample_folder / "mirrored rocket.png")
    (sample_folder / "coffee.png").unlink()
    idx.update()
    assert len(idx.vectors()) == 31
    paths = [m.relative_path for m in idx.search(image=photos["rocket"], k=3).matches]
    everything = [m.relative_path for m in idx.search(image=query, k=31).matches]
    assert "rocket.png" in paths and "mirrored rocket.png" in everything and "coffee.png" not in everything
    idx.close()
    reopened = lookalike.Index.open(db=tmp_path / "milvus-index.db")  # the store is remembered
    assert reopened.search(image=photos["rocket"], k=1).method == "milvus"


@pytest.mark.slow
def test_cli_with_a_milvus_store(sample_folder, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    store = f"milvus-lite://{tmp_path}/cli.db/shop"

    def cli(*args):
        result = subprocess.run([sys.executable, "-m", "lookalike.cli", *map(str, args)], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    cli("index", sample_folder, "--model", "efficientnet-lite0", "--store", store)
    [line] = cli("search", sample_folder / "rocket.png", "-k", "1", "--json", "--db",
                 sample_folder / ".lookalike").splitlines()
    result = json.loads(line)
    assert result["method"] == "milvus" and result["results"][0]["relative_path"] == "rocket.png"
    assert json.loads(cli("info", "--json", "--db", sample_folder / ".lookalike"))["store"] == store


# The package waits 180 s for its server; one CI run on a VM with heavy steal time did not see it start in that
# time (102 s for both server tests on the same machine later).
STARTUP_MS = 420_000


# -- a real Milvus standalone server (PyPI `milvus` 2.3.5: the server binary, started here on loopback) ---------
class MilvusStandalone:
    """`milvus-server --data DIR`, restartable on the same port over the same data. Its components advertise
    127.0.0.1 to each other; the client only ever connects to 127.0.0.1."""

    def __init__(self, data_dir) -> None:
        self.data_dir, self.port, self.server = str(data_dir), None, None

    def start(self) -> None:
        from milvus import MilvusServer, MilvusServerConfig

        class Config(MilvusServerConfig):
            def try_bind_port(self, port: int):
                """The package probes ports without SO_REUSEADDR (the server itself sets it): a port that a
                killed server left in TIME_WAIT would look taken for a minute."""
                probe = socket.socket()
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                    probe.listen()
                    return probe
                except OSError:
                    probe.close()
                    return None

        config = Config(data_dir=self.data_dir, **({"proxy_port": self.port} if self.port else {}))
        for part in ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode"):
            config.set(f"{part}.ip", "127.0.0.1")
        config.set("common.session.ttl", 5)  # a restarted server waits out its dead predecessor's sessions
        self.server = MilvusServer(config, wait_for_started=False)
        self.server.start()
        self.server.wait_started(timeout=STARTUP_MS)
        self.port = self.server.listen_port

    def kill(self) -> None:
        self.server.server_proc.kill()  # no goodbye: like a crashed pod
        self.server.server_proc.wait()
        self.server.stop()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def store(self, collection: str) -> str:
        return f"milvus://127.0.0.1:{self.port}/{collection}"

    def client(self):
        from pymilvus import MilvusClient

        return MilvusClient(f"http://127.0.0.1:{self.port}")


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory):
    if not (sys.platform == "linux" and platform.machine() == "x86_64"):
        pytest.skip("PyPI's milvus 2.3.5 ships its server binary for Linux x86-64 only")
    pytest.importorskip("milvus", reason="the Milvus server tests need `pip install milvus==2.3.5`")
    server = MilvusStandalone(tmp_path_factory.mktemp("milvus-server"))
    server.start()
    yield server
    server.stop()


def _held_ids(server: MilvusStandalone, collection: str) -> list[int]:
    """Every id the server holds, one entry per stored row (a duplicate shows twice)."""
    client = server.client()
    [count] = client.query(collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
    rows = client.query(collection, filter="id >= 0", output_fields=["id"], limit=16_384, consistency_level="Strong")
    assert count["count(*)"] == len(rows)
    return sorted(row["id"] for row in rows)


def _wait_for_index(server: MilvusStandalone, collection: str) -> dict:
    client = server.client()
    for _ in range(600):
        index = client.describe_index(collection, "vector")
        if index["pending_index_rows"] == 0 and index["indexed_rows"] >= index["total_rows"]:
            return index
        time.sleep(0.1)
    raise AssertionError(f"the server never finished indexing: {index}")


def _same_answers(served, embedded, queries, k: int = 10) -> None:
    """Top-k paths agree (ties between pixel-identical copies in either order), scores too; recall@k ≥ 0.99."""
    found = 0
    for query in queries:
        ours, theirs = served.search(image=query, k=k), embedded.search(image=query, k=k)
        assert ours.method == "milvus"
        found += len({m.relative_path for m in ours.matches} & {m.relative_path for m in theirs.matches})
        np.testing.assert_allclose([m.score for m in ours.matches], [m.score for m in theirs.matches], atol=2e-3)
    assert found / (k * len(queries)) >= 0.99


@pytest.mark.slow
@pytest.mark.milvus_server
def test_a_milvus_server_gives_the_embedded_answers(milvus_server, sample_folder, tmp_path, photos, monkeypatch):
    monkeypatch.setattr("lookalike.store.milvus.ANN_FROM", 20)  # HNSW from 20 vectors, as from 50k in production
    parked = tmp_path / "parked"
    (sample_folder / "edited").rename(parked)  # 16 photos first: FLAT
    embedded = lookalike.open(sample_folder, db=tmp_path / "embedded.db", model="efficientnet-lite0")
    served = lookalike.Index.open(sample_folder, db=tmp_path / "served.db", model="efficientnet-lite0",
                                  store=milvus_server.store("photos"))
    queries = [photos["coffee"].resize((300, 200)), photos["rocket"], photos["chelsea"].rotate(5)]
    for idx in (embedded, served):
        idx.update()
    served.vectors()
    assert _wait_for_index(milvus_server, "photos")["index_type"] == "FLAT"
    _same_answers(served, embedded, queries)

    parked.rename(sample_folder / "edited")  # 31 images: the store switches the server's index to HNSW
    photos["rocket"].transpose(0).save(sample_folder / "mirrored rocket.png")
    (sample_folder / "coffee.png").unlink()
    photos["moon"].save(sample_folder / "rocket.png")  # same name, new picture: its vector is replaced
    for idx in (embedded, served):
        idx.update()
    served.vectors()
    assert _wait_for_index(milvus_server, "photos")["index_type"] == "HNSW"
    _same_answers(served, embedded, [*queries, photos["moon"]])
    top = served.search(image=photos["moon"], k=2).matches  # rocket.png holds the moon now: a tie with moon.png
    assert {m.relative_path for m in top} == {"moon.png", "rocket.png"} and min(m.score for m in top) > 0.99
    assert _held_ids(milvus_server, "photos") == sorted(row.id for row in served.catalog.rows().values())


@pytest.mark.slow
@pytest.mark.milvus_server
def test_a_server_killed_mid_sync_converges_with_nothing_lost_or_twice(milvus_server, sample_folder, tmp_path,
                                                                        photos, monkeypatch):
    from pymilvus import MilvusClient

    monkeypatch.setattr("lookalike.store.milvus.ANN_FROM", 20)
    monkeypatch.setattr("lookalike.store.milvus.BATCH", 4)  # many small writes, so the kill lands between two
    upsert, calls, crash_at = MilvusClient.upsert, [], [3]

    def upsert_then_crash(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == crash_at[0]:
            milvus_server.kill()
        return upsert(self, *args, **kwargs)

    embedded = lookalike.open(sample_folder, db=tmp_path / "embedded.db", model="efficientnet-lite0")
    embedded.update()
    served = lookalike.Index.open(sample_folder, db=tmp_path / "served.db", model="efficientnet-lite0",
                                  store=milvus_server.store("restarts"))
    served.update()
    catalog_ids = sorted(row.id for row in served.catalog.rows().values())
    monkeypatch.setattr(MilvusClient, "upsert", upsert_then_crash)
    with monkeypatch.context() as fast, pytest.raises(LookalikeError, match="catalog is unchanged"):
        fast.setattr("lookalike.store.milvus.TIMEOUT", 5.0)  # give up on the dead server after 5 s
        served.vectors()  # the first sync: killed after two of its eight writes
    assert served.catalog.get_meta("milvus_sync") is None and served.catalog.count() == 31
    milvus_server.start()
    served.vectors()  # the same process, its client reconnected: converges
    assert _held_ids(milvus_server, "restarts") == catalog_ids
    _same_answers(served, embedded, [photos["coffee"], photos["astronaut"].resize((256, 256))])

    # deletions and ten replaced vectors (the reconcile path), killed again after the deletes and one of three
    # writes; a new process converges
    for name in ("coffee.png", "coins.png", "camera.png"):
        (sample_folder / name).unlink()
    for name in ("astronaut", "chelsea", "rocket", "moon", "clock", "grass", "gravel", "brick", "retina", "china"):
        photos[name].rotate(90, expand=True).save(sample_folder / f"{name}.png")
    for idx in (embedded, served):
        idx.update()
    calls.clear()
    crash_at[0] = 2
    with monkeypatch.context() as fast, pytest.raises(LookalikeError, match="catalog is unchanged"):
        fast.setattr("lookalike.store.milvus.TIMEOUT", 5.0)
        served.vectors()
    milvus_server.start()
    monkeypatch.setattr(MilvusClient, "upsert", upsert)
    served.close()
    reopened = lookalike.Index.open(db=tmp_path / "served.db")
    reopened.vectors()
    assert _held_ids(milvus_server, "restarts") == sorted(row.id for row in reopened.catalog.rows().values())
    _same_answers(reopened, embedded, [photos["moon"].rotate(90, expand=True), photos["chelsea"]])

    # a restart with nothing to sync: the restarted server holds the collection released; searches still answer
    milvus_server.kill()
    milvus_server.start()
    _same_answers(reopened, embedded, [photos["coffee"]])
