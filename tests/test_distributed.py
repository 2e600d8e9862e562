"""Ray engine: on a local Ray (same index as in-process, resumable shards), and on a head + two worker nodes
with shards in moto's S3, where a worker node is killed while shards are in flight."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("ray")

import lookalike  # noqa: E402
from lookalike.distributed import RayEngine, ShardStore, _batches, _parquet  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def ray_on_loopback():
    """On Linux Ray advertises the machine's own address; this switch (read by every Ray process) keeps all of
    this module's Ray servers, local or multi-node, on 127.0.0.1."""
    from ray._private import ray_constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        patch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        yield


@pytest.fixture(scope="module")
def ray_session():
    import ray

    yield
    ray.shutdown()


def _vectors(idx):
    return {path: idx.catalog.vector_of(row.id) for path, row in idx.catalog.rows().items()}


def test_shards_are_stored_whole_in_a_directory_or_object_storage(tmp_path):
    from lookalike.indexer import Embedded
    from lookalike.sources import SourceFile

    items = [Embedded("a.png", np.arange(4, dtype=np.float32), (640, 480)), Embedded("b.jpg", None, error="bad")]
    data = _parquet(items, dim=4)
    files = {name: SourceFile(name, name, 1, 2) for name in ("a.png", "b.jpg")}
    for location in (tmp_path / "shards", "memory://lookalike-test-shards/run"):
        store = ShardStore(location)
        assert not store.exists("s1")
        store.write("s1", data)
        assert store.exists("s1") and store.read("s1") == data
        [batch] = list(_batches(store.read("s1"), files, batch_size=8))
        assert batch[0].key is files["a.png"] and batch[0].size == (640, 480)
        np.testing.assert_array_equal(batch[0].vector, np.arange(4))
        assert batch[1].vector is None and batch[1].error == "bad"
    assert [p.name for p in (tmp_path / "shards").iterdir()] == ["s1.parquet"]  # no temporary file left


@pytest.mark.slow
def test_ray_engine_builds_the_same_index_and_resumes(sample_folder, tmp_path, ray_session):
    (sample_folder / "broken.jpg").write_bytes(b"not an image")
    local = lookalike.open(sample_folder, db=tmp_path / "local.db", model="efficientnet-lite0")
    local.update()
    engine = RayEngine(tmp_path / "shards", shard_size=12, batch_size=8)
    distributed = lookalike.open(sample_folder, db=tmp_path / "ray.db", model="efficientnet-lite0")
    report = distributed.update(engine=engine)
    assert report.added == 31 and dict(report.skipped).keys() == {"broken.jpg"}
    assert engine.computed_shards == 3 and len(list((tmp_path / "shards").glob("*.parquet"))) == 3
    ours, theirs = _vectors(distributed), _vectors(local)
    assert ours.keys() == theirs.keys()
    assert min(float(ours[p] @ theirs[p]) for p in ours) > 0.999

    # A crashed run: the catalog lost its rows, but the shards on disk are reused, not recomputed.
    again = lookalike.open(sample_folder, db=tmp_path / "resumed.db", model="efficientnet-lite0")
    resumed_engine = RayEngine(tmp_path / "shards", shard_size=12, batch_size=8)
    assert again.update(engine=resumed_engine).added == 31
    assert resumed_engine.computed_shards == 0
    np.testing.assert_array_equal(_vectors(again)["rocket.png"], ours["rocket.png"])


@pytest.mark.slow
def test_cli_engine_ray(sample_folder, tmp_path):
    import json
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "lookalike.cli", "index", str(sample_folder), "--model",
                             "efficientnet-lite0", "--engine", "ray", "--shards", str(tmp_path / "s"), "--json"],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["added"] == 31 and list((tmp_path / "s").glob("*.parquet"))


# -- a head and two worker nodes on this machine (ray.cluster_utils.Cluster, as Ray's own tests do) ------------
SHARD = 4  # images per shard: 24 images → 6 shards, at most 2 in flight at once (one per worker node)


class GatedImages:
    """A loopback HTTP server of images that counts the GETs per path and, once armed, holds every GET after a
    path's first one (the driver's content hash) until `open()`: the test sees which shards are in flight."""

    def __init__(self, images: dict[str, bytes]) -> None:
        import http.server

        self.images, self.gets = images, {}
        self.armed, self.blocked = False, set()
        self.gate, self.lock = threading.Event(), threading.Lock()
        gated = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                with gated.lock:
                    gated.gets[self.path] = gated.gets.get(self.path, 0) + 1
                    hold = gated.armed and gated.gets[self.path] > 1 and not gated.gate.is_set()
                    if hold:
                        gated.blocked.add(self.path)
                if hold:
                    gated.gate.wait(120)
                payload = gated.images[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda request, address: None  # a client on a killed node hung up
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def arm(self) -> None:
        self.gets.clear()
        self.armed = True

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()


@pytest.fixture(scope="module")
def s3_and_cluster():
    """moto's S3 server on loopback (bucket `shards`) and a Ray cluster: a head with no CPU for tasks (as on
    KubeRay) and two worker nodes with one CPU each. Nodes inherit the S3 endpoint and keys from this env."""
    import fsspec
    import ray
    from moto.server import ThreadedMotoServer
    from ray.cluster_utils import Cluster

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    ray.shutdown()  # the local-Ray tests above started their own
    with pytest.MonkeyPatch.context() as env:
        for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}"}.items():
            env.setenv(key, value)
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.mkdir("shards")
        fsspec.filesystem("s3").clear_instance_cache()
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "include_dashboard": False,
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3,
                               "health_check_timeout_ms": 1000}})
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        yield fs, cluster, workers
        ray.shutdown()
        cluster.shutdown()
    server.stop()


@pytest.fixture(scope="module")
def gated_images(photos):
    import io

    images = {}
    for i, (name, photo) in enumerate(sorted(photos.items())[:12]):
        for turn in (0, 90):
            buffer = io.BytesIO()
            photo.convert("RGB").resize((320, 240)).rotate(turn, expand=True).save(buffer, "PNG")
            images[f"/{2 * i + turn // 90:03d}-{name}.png"] = buffer.getvalue()
    gated = GatedImages(images)
    yield gated
    gated.close()


def _kill_a_worker_when_both_have_a_shard(gated: GatedImages, cluster, node, killed: list) -> None:
    order = sorted(gated.images)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with gated.lock:
            in_flight = {order.index(path) // SHARD for path in gated.blocked}
        if len(in_flight) >= 2:  # two shards being read at once: one on each worker node
            killed.append(set(gated.blocked))
            cluster.remove_node(node, allow_graceful=False)
            break
        time.sleep(0.05)
    gated.gate.set()


@pytest.mark.slow
@pytest.mark.ray_cluster
def test_a_killed_worker_node_loses_and_duplicates_nothing(s3_and_cluster, gated_images, tmp_path):
    fs, cluster, workers = s3_and_cluster
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(f"{gated_images.base}{path}\n" for path in sorted(gated_images.images)))
    local = lookalike.open(listing, db=tmp_path / "local.db", model="efficientnet-lite0")
    assert local.update().added == 24

    gated_images.arm()
    killed: list = []
    watcher = threading.Thread(target=_kill_a_worker_when_both_have_a_shard,
                               args=(gated_images, cluster, workers[0], killed))
    watcher.start()
    engine = RayEngine("s3://shards/run", shard_size=SHARD, batch_size=4)
    distributed = lookalike.open(listing, db=tmp_path / "ray.db", model="efficientnet-lite0")
    report = distributed.update(engine=engine)
    watcher.join()

    assert killed, "the two worker nodes never had a shard in flight at the same time"
    # the killed node's shard ran again on the other node: its images were read a third time
    assert max(gated_images.gets[path] for path in killed[0]) == 3
    assert report.added == 24 and not report.skipped and engine.computed_shards == 6
    # the committed result: 6 whole shards in the bucket, every image in exactly one, each once in the catalog
    shards = fs.find("shards/run")
    assert len(shards) == 6 and not list(tmp_path.glob("**/*.parquet"))  # nothing on the driver's disk
    import pyarrow.parquet as pq

    relpaths = [r for key in shards for r in pq.read_table(fs.open(key)).column("relpath").to_pylist()]
    assert sorted(relpaths) == sorted(f"{gated_images.base}{path}" for path in gated_images.images)
    ours, theirs = _vectors(distributed), _vectors(local)
    assert ours.keys() == theirs.keys() and len(ours) == 24
    assert min(float(ours[p] @ theirs[p]) for p in ours) > 0.999
    for query in list(theirs)[::5]:
        expected = [m.relative_path for m in local.search(image=query, k=5).matches]
        assert [m.relative_path for m in distributed.search(image=query, k=5).matches] == expected

    # another driver (a fresh catalog) finds every shard in the bucket: nothing is embedded again
    gated_images.gets.clear()
    again = RayEngine("s3://shards/run", shard_size=SHARD, batch_size=4)
    resumed = lookalike.open(listing, db=tmp_path / "resumed.db", model="efficientnet-lite0")
    assert resumed.update(engine=again).added == 24 and again.computed_shards == 0
    assert set(gated_images.gets.values()) == {1}  # only the driver's content hashes


@pytest.mark.slow
@pytest.mark.ray_cluster
def test_cli_runs_on_the_cluster_with_shards_in_a_bucket(s3_and_cluster, gated_images, tmp_path):
    import json
    import os
    import subprocess
    import sys

    fs, cluster, _ = s3_and_cluster
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(f"{gated_images.base}{path}\n" for path in sorted(gated_images.images)[:8]))
    result = subprocess.run([sys.executable, "-m", "lookalike.cli", "index", str(listing), "--db",
                             str(tmp_path / "c.db"), "--model", "efficientnet-lite0", "--engine", "ray",
                             "--ray-address", cluster.address, "--ray-shards", "s3://shards/cli", "--json"],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["added"] == 8 and len(fs.find("shards/cli")) == 1
    assert not list(tmp_path.glob("*.shards"))  # the driver kept nothing on its disk
