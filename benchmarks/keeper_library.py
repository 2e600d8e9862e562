"""Keeper rules on a library of originals with edited copies, against the file-facts-only rules, same run.

    PYTHONPATH=src python benchmarks/keeper_library.py [--verify]

16 sample photos, 7 edited copies each (border, caption, emoji, screenshot, crop, upscaled crop, re-save), file
dates shuffled. Prints, per rule set, in how many groups holding one original the keeper is that original, and
the time `find_duplicates` took (the geometry costs one ORB match per pair of group members).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lookalike  # noqa: E402
from lookalike.dupes import find_duplicates  # noqa: E402
from lookalike.samples import sample_photos  # noqa: E402
from tests.edited_library import write_library  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--verify", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "library"
        write_library(folder, sample_photos())
        with lookalike.open(folder, model="efficientnet-lite0") as idx:
            idx.update()
            for name, keep in (("file facts (old default)", ("resolution", "size", "oldest")),
                               ("original + file facts (new default)",
                                ("original", "resolution", "quality", "size", "oldest"))):
                start = time.perf_counter()
                groups = find_duplicates(idx, keep=keep, verify=args.verify)
                elapsed = time.perf_counter() - start
                judged = [g for g in groups if sum("/" not in m.relative_path for m in g.members) == 1]
                right = sum("/" not in g.keeper.relative_path for g in judged)
                images = sum(len(g.members) for g in groups)
                print(f"{name:38s} keeper is the original in {right}/{len(judged)} groups "
                      f"({len(groups)} groups, {images} images) in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
