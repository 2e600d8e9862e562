"""lookalike against Immaculate (Rust + ONNX duplicate finder) on the same mixed folder, in one run.

The folder: photos and tiles of large photos (plasma-workspace-wallpapers, scikit-image, scikit-learn), edited
copies of them (crops, turns, mirror images, screenshots, resizes, re-encodes, overlays), and clip-art
(openclipart-png). Each tool runs in its own child process from a cold start: index + duplicate groups. Reported:
images/s (files / wall time), peak RSS of the child (wait4: its largest process, so for lookalike's hash
models, which decode in forked workers, the parent's), recall of (copy, original) pairs (both in one
group), and precision on photo pairs (pairs in a group that involve no clip-art: true when both come from the
same original). Every job runs `--repeat` times (default 3), in rounds, each round running every job once in
turn; the tables give medians (peak RSS: the largest) and lookalike's ratio to Immaculate's images/s.

Immaculate needs Python 3.12:
    ~/.pyenv/versions/3.12.1/bin/python -m venv /tmp/imm && /tmp/imm/bin/pip install "immaculate[sscd]"
    python benchmarks/vs_immaculate.py --out /tmp/vs-imm --immaculate-python /tmp/imm/bin/python
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lookalike.edits import EDIT_FAMILIES
from lookalike.evalcopy import clipart_files, tiles
from lookalike.images import load_image

EDITS = ("crop-50", "rotate-90", "flip", "screenshot", "resize-25", "jpeg-30", "text-overlay", "border", "blur",
         "grayscale")
IMMACULATE = ("import json, sys, immaculate; r = immaculate.find_duplicates(sys.argv[1], method=sys.argv[2]); "
              "print(json.dumps([[str(p) for p in g] for g in r.exact + r.near]))")
LOOKALIKE = ("import json, os, sys; from lookalike.api import Index; from lookalike.dupes import find_duplicates; "
             "i = Index.open(sys.argv[1], db=sys.argv[3], model=sys.argv[2], copy_extras=sys.argv[4:] or None); "
             "i.update(); keep = json.loads(os.environ['VS_KEEP']); "
             "print(json.dumps([[m.path for m in g.members] for g in find_duplicates(i, keep=keep)]))")
# Immaculate only groups; lookalike's default keep rule "original" also analyses every group's images (ORB) to
# pick the original to keep. The timed runs use the metadata rules unless --keep says otherwise.
METADATA_KEEP = "resolution,quality,size,oldest"


def build_folder(out: Path, photos: list[Path], clipart: int, seed: int = 0) -> dict[str, str]:
    """Writes the folder; returns file name → the original it comes from ('' for clip-art)."""
    rng = np.random.default_rng(seed)
    folder = out / "folder"
    folder.mkdir(parents=True, exist_ok=True)
    origin = {}
    number = 0
    for path in photos:
        image = load_image(path)
        for part in tiles(image) if image.width >= 1600 else [image]:
            part.thumbnail((1024, 1024))
            name = f"o{number:04d}"
            part.save(folder / f"{name}.jpg", quality=90)
            origin[f"{name}.jpg"] = name
            for family in rng.choice(EDITS, 2, replace=False):
                copy = f"{name}-{family}.jpg"
                EDIT_FAMILIES[str(family)](part, rng).convert("RGB").save(folder / copy, quality=88)
                origin[copy] = name
            number += 1
    for index, path in enumerate(clipart_files(count=clipart)):
        shutil.copyfile(path, folder / f"clip{index:05d}.png")
        origin[f"clip{index:05d}.png"] = ""
    return origin


# Immaculate skips images over Pillow's decompression-bomb size (2 clip-arts of 169 Mpx here); lookalike's own
# guard allows 250 Mpx by default. The same limit for both, or lookalike's RSS measures those two files.
PIXEL_LIMIT = {"LOOKALIKE_MAX_PIXELS": "89478485"}


def run(command: list[str], keep: str, env: dict[str, str]) -> tuple[list[list[str]], float, float, float]:
    """(groups, seconds, peak RSS MiB, CPU seconds) of a child process. CPU seconds (user + system, all threads)
    depend far less on what else the machine runs than wall time does."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             env={**os.environ, **PIXEL_LIMIT, "VS_KEEP": json.dumps(keep.split(",")), **env})
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{command[:3]} failed ({status})")
    return json.loads(output), seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def score(groups: list[list[str]], origin: dict[str, str]) -> tuple[float, float]:
    """(recall of (copy, original) pairs, precision of predicted photo pairs)."""
    found, photo_pairs, right = set(), 0, 0
    for group in groups:
        names = [Path(p).name for p in group]
        for a, b in itertools.combinations(names, 2):
            found.add(frozenset((a, b)))
            if origin.get(a) and origin.get(b):
                photo_pairs += 1
                right += origin[a] == origin[b]
    truth = [frozenset((copy, f"{source}.jpg")) for copy, source in origin.items() if source and "-" in copy]
    return sum(pair in found for pair in truth) / len(truth), right / max(photo_pairs, 1)


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from copydetect_hard import photo_sources

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/vs-immaculate"))
    parser.add_argument("--clipart", type=int, default=1000)
    parser.add_argument("--immaculate-python", default="/tmp/imm/bin/python")
    parser.add_argument("--immaculate", default="pdq,sscd_distilled")
    parser.add_argument("--lookalike", default="pdq,sscd-distilled,sscd-distilled+dihedral")
    parser.add_argument("--keep", default=METADATA_KEEP, help="lookalike's keep rules (e.g. original,resolution)")
    parser.add_argument("--baseline-src", help="also run lookalike with this src folder (e.g. the main branch's)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every run; medians are reported")
    parser.add_argument("--no-sweep", action="store_true", help="skip the untimed threshold sweep at the end")
    args = parser.parse_args()
    origin_file = args.out / "origin.json"
    if not origin_file.exists():
        origin_file.parent.mkdir(parents=True, exist_ok=True)
        origin_file.write_text(json.dumps(build_folder(args.out, photo_sources(args.out / "photos"), args.clipart)))
    origin = json.loads(origin_file.read_text())
    folder = str(args.out / "folder")
    compile_bytecode([Path(__file__).parents[1] / "src", *([Path(args.baseline_src)] if args.baseline_src else [])])
    print(f"load average {os.getloadavg()[0]:.2f}; lookalike keep rules {args.keep}; {args.repeat} rounds, "
          "medians (each round runs every job once, in turn, so both tools see the same load)")
    print(f"{len(origin)} files, {sum('-' in n for n in origin)} copies, {sum(not v for v in origin.values())} "
          "clip-art\n\n| tool | method | img/s | img per CPU s | peak RSS MiB | recall (copy, original) "
          "| precision photo pairs | img/s per round |\n|---|---|---|---|---|---|---|---|")
    immaculate = [("Immaculate", m, [args.immaculate_python, "-c", IMMACULATE, folder, m], {})
                  for m in args.immaculate.split(",") if m]
    paired = itertools.zip_longest(immaculate, lookalike_runs(args, folder), fillvalue=[])
    runs = [job for theirs, ours in paired for job in ([theirs] if theirs else []) + ours]
    rounds: dict[int, list] = {number: [] for number in range(len(runs))}
    for _ in range(args.repeat):
        for number, (_tool, _method, command, env) in enumerate(runs):
            forget_index(command)
            rounds[number].append(run(command, args.keep, env))
    for number, (tool, method, _command, _env) in enumerate(runs):
        results = rounds[number]
        rates = [len(origin) / seconds for _, seconds, _, _ in results]
        recall, precision = score(results[-1][0], origin)
        print(f"| {tool} | {method} | {np.median(rates):.1f} | {np.median([len(origin) / r[3] for r in results]):.1f} "
              f"| {max(r[2] for r in results):.0f} | {recall:.3f} | {precision:.2f} | "
              f"{', '.join(f'{rate:.0f}' for rate in rates)} |", flush=True)
    median_rate = {number: float(np.median([len(origin) / r[1] for r in rounds[number]])) for number in rounds}
    for number, (tool, method, _, _) in enumerate(runs):
        theirs = [n for n, job in enumerate(runs) if job[0] == "Immaculate"
                  and job[1] == method.split("+")[0].replace("-", "_")]
        if tool != "Immaculate" and theirs:
            print(f"{tool} {method} ÷ Immaculate {runs[theirs[0]][1]}: "
                  f"{median_rate[number] / median_rate[theirs[0]]:.2f}× its images/s")
    if not args.no_sweep:
        sweep(args, origin)


def lookalike_runs(args, folder: str) -> list[list[tuple[str, str, list[str], dict[str, str]]]]:
    """Per method: lookalike's run, and the same with --baseline-src right after it."""
    per_method = []
    for method in [m for m in args.lookalike.split(",") if m]:
        runs: list = []
        per_method.append(runs)
        model, *extras = method.split("+")
        for tool, src in (("lookalike", None), ("lookalike baseline", args.baseline_src)):
            if tool != "lookalike" and not src:
                continue
            db = args.out / f"index-{method}{'-baseline' if src else ''}.db"
            runs.append((tool, method, [sys.executable, "-c", LOOKALIKE, folder, model, str(db), *extras],
                         {"PYTHONPATH": src} if src else {}))
    return per_method


def compile_bytecode(sources: list[Path]) -> None:
    """Bytecode written ahead, as `pip install` does: with PYTHONDONTWRITEBYTECODE set, an editable checkout would
    otherwise compile lookalike's modules in every timed run (0.1-0.2 s; Immaculate's are compiled)."""
    import compileall

    for source in sources:
        compileall.compile_dir(source, quiet=1)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def forget_index(command: list[str]) -> None:
    """A cold start for lookalike's runs: its index and search cache deleted first."""
    if command[1] != "-c" or command[2] != LOOKALIKE:
        return
    db = Path(command[5])
    for stale in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(db.parent / f"{db.stem}.cache", ignore_errors=True)


def sweep(args, origin: dict[str, str]) -> None:
    """Untimed: lookalike's dupes on the indexes just built, across cosine thresholds and, for copy models,
    across copy-score thresholds (the default grouping, `threshold=None`). The keeper rule does not change the
    groups, so the cheap file-facts rule is used."""
    from lookalike.api import Index
    from lookalike.dupes import find_duplicates
    from lookalike.thresholds import copy_threshold_info

    os.environ.update(PIXEL_LIMIT)
    print("\n| lookalike method | threshold | recall | precision photo pairs | links |\n|---|---|---|---|---|")
    for method in [m for m in args.lookalike.split(",") if m]:
        with Index.open(db=args.out / f"index-{method}.db", create=False) as index:
            runs = []
            for threshold in (0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85):
                if method.startswith("pdq"):
                    threshold = 1 - 2 * round((1 - threshold) * 128) / 256
                runs.append((f"cosine {threshold:.3f}", {"threshold": threshold}))
            if copy_threshold_info(method.split("+")[0], index.catalog) is not None:
                runs += [(f"copy score {t:+.2f}", {"copy_threshold": t}) for t in (0.0, 0.02, 0.04, 0.06, 0.1)]
            for label, options in runs:
                groups = find_duplicates(index, keep=("resolution", "size"), **options)
                recall, precision = score([[m.path for m in g.members] for g in groups], origin)
                links = sum(len(g.links) for g in groups)
                print(f"| {method} | {label} | {recall:.3f} | {precision:.3f} | {links} |", flush=True)

if __name__ == "__main__":
    main()
