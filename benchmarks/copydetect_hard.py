"""Hard copy detection per model: µAP, acc@1, recall at 90 % precision, per edit family, img/s.

The set (lookalike.evalcopy.build_hard_set): tiles of large photos (sibling tiles are the distractors), whole
scikit-image / scikit-learn photos, hard edits (15 % crops, turns, mirror images, screenshots, combos), a fifth of
the originals held out (their copies are negatives), and clip-art distractors. Needs the Debian packages
plasma-workspace-wallpapers (large photos) and openclipart-png (clip-art).

Each model's vectors are computed once (references with their region grid, queries with their dihedral variants
and their frame-less `trim` variant) and cached in OUT/vectors-MODEL.npz, OUT/trim-MODEL.npz and
OUT/regions-MODEL.npz; the methods (plain, +dihedral, +trim, +regions, +norm) are combinations of rows.
`sscd-distilled+dihedral+trim+regions+norm` is what `find_copies` does on an index with region variants.

    python benchmarks/copydetect_hard.py --out /tmp/hard --models sscd-distilled,sscd,efficientnet-lite0,pdq \
        --clipart 2000
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.copies import QUERY_DIHEDRAL, extra_kinds
from lookalike.evalcopy import (
    background,
    best_similarity,
    build_hard_set,
    clipart_files,
    copy_scores,
    embed_variants,
)
from lookalike.evaluate import CopyDetectionSet, _report
from lookalike.models.registry import load_embedder
from lookalike.samples import sample_photos


def photo_sources(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in sample_photos().items():
        if not (folder / f"sk_{name}.png").exists():
            image.save(folder / f"sk_{name}.png")
    walls = []
    for images in sorted(glob.glob("/usr/share/wallpapers/*/contents/images")):
        files = glob.glob(images + "/*.jpg") + glob.glob(images + "/*.png")
        if files:
            walls.append(Path(max(files, key=lambda f: Image.open(f).size[0])))
    return sorted(folder.glob("*.png")) + walls


def dataset(out: Path, clipart: int) -> CopyDetectionSet:
    state = out / "dataset.json"
    if state.exists():
        saved = json.loads(state.read_text())
        return CopyDetectionSet([Path(p) for p in saved["references"]], [Path(p) for p in saved["queries"]],
                                saved["truth"], saved["families"])
    built = build_hard_set(photo_sources(out / "photos"), out / "data", clipart_files(count=clipart))
    state.write_text(json.dumps({"references": [str(p) for p in built.references],
                                 "queries": [str(p) for p in built.queries],
                                 "truth": built.truth, "families": built.families}))
    return built


def vectors(out: Path, data: CopyDetectionSet, model: str, regions: bool) -> dict:
    """The model's vectors, cached: references, queries with their dihedral variants, and (optionally)
    references with their region grids (a separate cache: the costly part)."""
    embedder = None
    cache = out / f"vectors-{model}.npz"
    if cache.exists():
        found = dict(np.load(cache))
    else:
        embedder = load_embedder(model)
        start = time.perf_counter()
        owners, rows = embed_variants(data.references, embedder, ("",))
        found = {"ref_owners": owners, "ref": rows, "plain_seconds": time.perf_counter() - start}
        start = time.perf_counter()
        owners, rows = embed_variants(data.queries, embedder, QUERY_DIHEDRAL)
        found.update(query_owners=owners, query=rows, query_seconds=time.perf_counter() - start)
        np.savez(cache, **found)
    trim_cache = out / f"trim-{model}.npz"
    if not trim_cache.exists():
        embedder = embedder or load_embedder(model)
        start = time.perf_counter()
        owners, rows = embed_variants(data.queries, embedder, ("trim",))
        np.savez(trim_cache, trim_owners=owners, trim=rows, trim_seconds=time.perf_counter() - start)
    found.update(dict(np.load(trim_cache)))
    region_cache = out / f"regions-{model}.npz"
    if regions and not region_cache.exists():
        embedder = embedder or load_embedder(model)
        start = time.perf_counter()
        owners, rows = embed_variants(data.references, embedder, ("", *extra_kinds(model, ("regions",))))
        np.savez(region_cache, reg_owners=owners, reg=rows, regions_seconds=time.perf_counter() - start)
    if regions:
        found.update(dict(np.load(region_cache)))
    return found


def methods(data: CopyDetectionSet, model: str, v: dict) -> list[tuple[str, np.ndarray]]:
    """(method name, query × reference similarity) for every combination of query and reference variants."""
    first = np.r_[True, v["query_owners"][1:] != v["query_owners"][:-1]]
    plain_queries = (v["query_owners"][first], v["query"][first])
    with_trim = np.concatenate([v["query_owners"], v["trim_owners"]]), np.concatenate([v["query"], v["trim"]])
    order = np.argsort(with_trim[0], kind="stable")
    variants = {"": plain_queries, "+dihedral": (v["query_owners"], v["query"]),
                "+dihedral+trim": (with_trim[0][order], with_trim[1][order])}
    refs = {"": (v["ref_owners"], v["ref"])}
    if "reg" in v:
        refs["+regions"] = (v["reg_owners"], v["reg"])
    return [(model + query_name + ref_name, best_similarity(queries, references))
            for query_name, queries in variants.items() for ref_name, references in refs.items()]


def table_row(data: CopyDetectionSet, name: str, similarity: np.ndarray) -> str:
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :10]
    row = _report(name, data, top, np.take_along_axis(similarity, top, axis=1), None).as_dict()
    fam = row["per_family"]
    return (f"| {row['model']} | {row['micro_ap']:.3f} | {row['accuracy_at_1']:.3f} | "
            f"{row['recall_at_90_precision']:.3f} | {row['threshold_at_90_precision'] or float('nan'):.3f} | "
            f"{fam.get('crop-15', float('nan')):.2f} | {fam.get('rotate-90', float('nan')):.2f} | "
            f"{fam.get('flip', float('nan')):.2f} | {fam.get('screenshot', float('nan')):.2f} | "
            f"{fam.get('border', float('nan')):.2f} | {fam.get('combo', float('nan')):.2f} |")


def with_norm(name: str, similarity: np.ndarray) -> list[tuple[str, np.ndarray]]:
    return [(name, similarity), (name + "+norm", copy_scores(similarity, background(similarity)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/lookalike-hard"))
    parser.add_argument("--models", default="sscd-distilled,sscd,efficientnet-lite0,pdq")
    parser.add_argument("--clipart", type=int, default=2000)
    parser.add_argument("--regions", default="sscd-distilled", help="models to also run with region grids")
    parser.add_argument("--subset-clipart", type=int, default=None,
                        help="evaluate on the originals and only this many of the clip-art references (region grids "
                        "cost 10 embeddings per reference)")
    args = parser.parse_args()
    data = dataset(args.out, args.clipart)
    if args.subset_clipart is not None:
        keep = [p for p in data.references if p.name.startswith("R")]
        keep += [p for p in data.references if p.name.startswith("D")][:args.subset_clipart]
        positions = {p: i for i, p in enumerate(data.references)}
        data = CopyDetectionSet(keep, data.queries, data.truth, data.families)
        parent, args.out = args.out, args.out / f"subset-{args.subset_clipart}"
        args.out.mkdir(exist_ok=True)
        for model in args.models.split(","):  # the parent's vectors, restricted to the kept references
            if (parent / f"vectors-{model}.npz").exists() and not (args.out / f"vectors-{model}.npz").exists():
                v = dict(np.load(parent / f"vectors-{model}.npz"))
                chosen = np.asarray([positions[p] for p in keep])
                v["ref_owners"], v["ref"] = np.arange(len(chosen)), v["ref"][chosen]
                v["plain_seconds"] = v["plain_seconds"] * len(chosen) / len(positions)
                np.savez(args.out / f"vectors-{model}.npz", **v)
    print(f"{len(data.references)} references, {len(data.queries)} queries, "
          f"{sum(t is None for t in data.truth)} negatives")
    print("| method | µAP | acc@1 | recall@90%P | threshold@90%P | crop-15 acc@1 | rotate-90 | flip | screenshot "
          "| border | combo |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    best: dict[str, np.ndarray] = {}
    for model in args.models.split(","):
        v = vectors(args.out, data, model, model in args.regions.split(","))
        images = len(data.references)
        print(f"<!-- {model}: {images / float(v['plain_seconds']):.1f} img/s plain; queries x{len(QUERY_DIHEDRAL)} "
              f"variants {float(v['query_seconds']):.0f} s; regions "
              f"{float(v['regions_seconds']) if 'regions_seconds' in v else 0:.0f} s -->")
        for name, similarity in methods(data, model, v):
            best[name] = similarity
            for label, scores in with_norm(name, similarity):
                print(table_row(data, label, scores), flush=True)
    fused = [n for n in best if n.endswith("+dihedral+trim") and n.startswith("sscd")]
    if len(fused) > 1:  # the two SSCD models averaged (each image embedded twice)
        for label, scores in with_norm(" & ".join(fused), sum(best[n] for n in fused) / len(fused)):
            print(table_row(data, label, scores), flush=True)

if __name__ == "__main__":
    main()
