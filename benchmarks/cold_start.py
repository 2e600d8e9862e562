"""Cold start, whole process: the tutorials' recipe vs the `lookalike` CLI, interleaved, median of N runs.

Every figure is a fresh Python process, timed from spawn to exit, with its peak RSS (from `wait4`):

- recipe, image / text: `CLIPModel.from_pretrained` + `AutoProcessor`, one query, cosine over stored vectors;
- `lookalike search IMAGE` and `lookalike search --text` against an index of the same photos;
- indexing N photos end to end: the recipe (one image at a time, fp32, vectors saved) vs `lookalike index`
  into a new index (the model export is cached beforehand, as after any first use).

The model is CLIP ViT-B/32 in its real layout with random weights (compute and memory do not depend on them)
and a BPE tokenizer of CLIP's size (49,408 tokens, 48,894 merges), saved to a local folder; photos are the
scikit-image samples saved as 640×480 JPEGs. The first `lookalike` run of the model (export) is not timed.

    python benchmarks/cold_start.py [--rounds 5] [--index-rounds 5] [--photos 256]
    python benchmarks/cold_start.py --sessions CACHE/onnx/<model folder> [--rounds 5]

`--sessions` compares ONNX Runtime session set-ups on a model folder the first form (or any use) filled, each in
a fresh process: start-up (import + session + first one-image run) and images/s on batches of 32.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

RECIPE = """
import sys, numpy as np, torch
from PIL import Image
from transformers import AutoProcessor, CLIPModel
checkpoint, stored, query = sys.argv[1:4]
model = CLIPModel.from_pretrained(checkpoint).eval()
processor = AutoProcessor.from_pretrained(checkpoint)
with torch.no_grad():
    if query.endswith(".jpg"):
        features = model.get_image_features(**processor(images=Image.open(query).convert("RGB"), return_tensors="pt"))
    else:
        features = model.get_text_features(**processor(text=[query], return_tensors="pt", padding=True))
query = getattr(features, "pooler_output", features)[0].numpy()
vectors = np.load(stored)
scores = vectors @ query / np.linalg.norm(vectors, axis=1) / np.linalg.norm(query)
print(np.argsort(-scores)[:10])
"""

RECIPE_INDEX = """
import sys, numpy as np, torch
from pathlib import Path
from PIL import Image
from transformers import AutoProcessor, CLIPModel
checkpoint, folder, out = sys.argv[1:4]
model = CLIPModel.from_pretrained(checkpoint).eval()
processor = AutoProcessor.from_pretrained(checkpoint)
vectors = []
for path in sorted(Path(folder).glob("*.jpg")):
    with torch.no_grad():
        features = model.get_image_features(**processor(images=Image.open(path).convert("RGB"), return_tensors="pt"))
    vectors.append(getattr(features, "pooler_output", features)[0].numpy())
np.save(out, np.stack(vectors))
"""


def write_tokenizer_files(folder: Path, size: int = 49408) -> None:
    """A byte-level BPE vocabulary and merge list of CLIP's size (random merges of existing tokens)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import _bytes_to_unicode

    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols]
    seen, merges, rng = set(vocab), [], random.Random(0)
    while len(vocab) < size - 2:
        first, second = vocab[rng.randrange(len(vocab))], vocab[rng.randrange(len(vocab))]
        token = first + second
        if first.endswith("</w>") or len(token) > 12 or token in seen:
            continue
        seen.add(token)
        vocab.append(token)
        merges.append(f"{first} {second}")
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({s: i for i, s in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def save_random_clip(folder: Path) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True)
    write_tokenizer_files(folder)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(projection_dim=512)).save_pretrained(folder)
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77).save_pretrained(folder)
    CLIPImageProcessor().save_pretrained(folder)
    return folder


def write_photos(folder: Path, count: int) -> None:
    from lookalike.samples import sample_photos

    folder.mkdir(parents=True)
    photos = list(sample_photos().items())
    for i in range(count):
        name, photo = photos[i % len(photos)]
        photo.convert("RGB").resize((640, 480)).rotate(i % 7).save(folder / f"{i:04d}-{name}.jpg", quality=90)


SESSION = """
import json, os, sys, time
start = time.perf_counter()
import numpy as np, onnxruntime as ort
graph, optimize, prepack = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
options = ort.SessionOptions()
options.intra_op_num_threads, options.inter_op_num_threads = os.cpu_count(), 1
options.add_session_config_entry("session.intra_op.allow_spinning", "0")
if not optimize:
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
if not prepack:
    options.add_session_config_entry("session.disable_prepacking", "1")
session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
opened = time.perf_counter()
batch = np.random.default_rng(0).standard_normal((32, 3, 224, 224), dtype=np.float32)
session.run(None, {"pixel_values": batch[:1]})
first = time.perf_counter()
session.run(None, {"pixel_values": batch})
timed = time.perf_counter()
for _ in range(3):
    session.run(None, {"pixel_values": batch})
print(json.dumps({"session": opened - start, "cold": first - start, "throughput": 96 / (time.perf_counter() - timed)}))
"""


def compare_sessions(folder: Path, rounds: int) -> None:
    """The session set-ups, interleaved, each in a fresh process; medians."""
    raw = folder / "vision.int8.onnx"
    optimized = next(folder.glob("vision.int8.opt-*.onnx"))
    setups = {"exported graph, optimised at load, pre-packed (before)": (raw, "1", "1"),
              "saved optimised graph (mmapped weights), pre-packed": (optimized, "0", "1"),
              "saved optimised graph, no pre-packing (queries)": (optimized, "0", "0")}
    runs: dict[str, list[dict]] = {name: [] for name in setups}
    for _ in range(rounds):
        for name, (graph, optimize, prepack) in setups.items():
            done = subprocess.run([sys.executable, "-c", SESSION, str(graph), optimize, prepack], check=True,
                                  capture_output=True, text=True)
            runs[name].append(json.loads(done.stdout))
    print(f"ONNX Runtime sessions on {folder.name}/vision.int8 (median of {rounds}, interleaved, fresh processes)")
    for name, results in runs.items():
        session, cold, speed = (statistics.median(r[key] for r in results) for key in ("session", "cold", "throughput"))
        print(f"  {name:<56} import+session {session:5.2f} s, +first image {cold:5.2f} s, {speed:5.1f} img/s")


def prepare(tmp: Path, photos: int) -> None:
    """Run in a child process: Linux reports a child's peak RSS as at least its parent's at fork, so the
    measuring parent must never grow (no torch, no numpy)."""
    import numpy as np

    save_random_clip(tmp / "clip")
    write_photos(tmp / "photos", photos)
    np.save(tmp / "stored.npy", np.random.default_rng(0).standard_normal((photos, 512), dtype=np.float32))


def run(command: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024


Case = tuple[Callable[[], list[str]], Path]  # the command (made afresh for every run) and where it runs


def measure(cases: dict[str, Case], env: dict, rounds: int) -> dict[str, tuple[float, float]]:
    """Median wall time and peak RSS per case, the cases interleaved round by round."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (command, cwd) in cases.items():
            samples[name].append(run(command(), cwd, env))
    return {name: (statistics.median(s[0] for s in runs), statistics.median(s[1] for s in runs))
            for name, runs in samples.items()}


def report(title: str, results: dict[str, tuple[float, float]], baseline: str) -> None:
    print(f"\n{title}")
    base_time, base_rss = results[baseline]
    for name, (wall, rss) in results.items():
        ratio = "" if name == baseline else f"   {base_time / wall:4.1f}x faster, {rss / base_rss:4.0%} of its RSS"
        print(f"  {name:<34} {wall:6.2f} s  {rss:6.0f} MiB{ratio}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--index-rounds", type=int, default=5)
    parser.add_argument("--photos", type=int, default=256)
    parser.add_argument("--sessions", type=Path, help="compare session set-ups on this model cache folder")
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        return prepare(args.prepare, args.photos)
    if args.sessions:
        return compare_sessions(args.sessions, args.rounds)
    python = sys.executable
    cli = [python, "-m", "lookalike.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "LOOKALIKE_CACHE": str(tmp / "cache"), "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        subprocess.run([python, __file__, "--prepare", str(tmp), "--photos", str(args.photos)], env=env, check=True,
                       stderr=subprocess.DEVNULL)
        checkpoint = tmp / "clip"
        query = next((tmp / "photos").glob("0000-*.jpg"))
        # First use: export and optimise the graphs (untimed), then the index the searches run against.
        subprocess.run([*cli, "index", str(tmp / "photos"), "--model", str(checkpoint)], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([*cli, "search", "--text", "warm up"], env=env, check=True, cwd=tmp / "photos",
                       stdout=subprocess.DEVNULL)
        stored = tmp / "stored.npy"  # the recipe's "stored vectors": one per photo (their values cost nothing)
        print(f"{os.cpu_count()} cores; CLIP ViT-B/32 layout, random weights; {args.photos} photos 640x480; "
              f"median of {args.rounds}, interleaved")
        photos, recipe = tmp / "photos", [python, "-c", RECIPE, str(checkpoint), str(stored)]
        search = measure({
            "recipe, image query": (lambda: [*recipe, str(query)], tmp),
            "lookalike search IMAGE": (lambda: [*cli, "search", str(query)], photos),
            "recipe, text query": (lambda: [*recipe, "a photo of a cat"], tmp),
            "lookalike search --text": (lambda: [*cli, "search", "--text", "a photo of a cat"], photos),
            "import torch": (lambda: [python, "-c", "import torch"], tmp),
            "import onnxruntime, numpy, PIL, faiss": (lambda: [python, "-c", "import onnxruntime, numpy, PIL, faiss"],
                                                      tmp),
        }, env, args.rounds)
        names = list(search)
        report("cold search (whole process)", {k: search[k] for k in names[:2]}, names[0])
        report("", {k: search[k] for k in names[2:4]}, names[2])
        report("for scale", {k: search[k] for k in names[4:]}, names[4])
        if not args.index_rounds:
            return
        dbs = iter(range(10**6))
        index = measure({
            f"recipe, {args.photos} photos": (lambda: [python, "-c", RECIPE_INDEX, str(checkpoint), str(photos),
                                                       str(tmp / "recipe.npy")], tmp),
            f"lookalike index, {args.photos} photos": (lambda: [*cli, "index", str(photos), "--model", str(checkpoint),
                                                                "--db", str(tmp / f"index-{next(dbs)}.db")], tmp),
        }, env, args.index_rounds)
        report(f"index {args.photos} photos end to end (median of {args.index_rounds})", index,
               f"recipe, {args.photos} photos")


if __name__ == "__main__":
    main()
