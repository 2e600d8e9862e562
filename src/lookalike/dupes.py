"""Exact and near-duplicate groups, without an N×N similarity matrix.

1. Candidate pairs come from a chunked k-nearest-neighbour search over the index (memory: chunk × k, not N²).
2. Pairs at or above the threshold become edges; with verification, weaker pairs that local features confirm
   (crops the embedding misses) are rescued, and candidate pairs the features contradict are dropped.
3. Edges are merged strongest first, but a merge that would put two images below `group_min_score` of each
   other into one group is refused (complete linkage), so chains A~B~C~… never merge unrelated images.
4. Within a group, files with identical decoded pixels (metadata-only differences) are marked exact, and a
   keeper is suggested: largest resolution, then largest file, then oldest (configurable).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookalike.errors import ImageError, LookalikeError
from lookalike.models.registry import COPY_THRESHOLDS

# Cosine thresholds above which two images are called near-duplicates, per model (measured on the sample photos
# and their edited copies for efficientnet-lite0; hashes: 10 differing bits of 64; CLIP/DINOv2 from the
# copy-detection literature). `lookalike calibrate` can store measured values in an index instead.
DEFAULT_THRESHOLDS = {
    "efficientnet-lite0": 0.75,
    "phash": 1 - 2 * 10 / 64,
    "dhash": 1 - 2 * 10 / 64,
    "hf:openai/clip-vit-base-patch32": 0.92,
    "hf:facebook/dinov2-base#cls": 0.75,
    **COPY_THRESHOLDS,
}
FALLBACK_THRESHOLD = 0.90
RESCUE_FLOOR = 0.30  # with verification, candidates down to this cosine are checked with local features
DUPES_CANDIDATES_PER_RESULT = 32  # near-duplicates top the PQ ranking: no need for the tuned top-10 pool
SURE_SCORE = 0.98  # pairs this close need no geometric confirmation (and flat images have no features)
KEEP_RULES = ("resolution", "size", "oldest", "newest", "shortest-path")


@dataclass
class Member:
    id: int
    relative_path: str
    path: str
    width: int
    height: int
    size: int
    mtime_ns: int
    score: float = 1.0  # cosine similarity to the keeper
    exact: bool = False  # identical decoded pixels to the keeper
    verified: bool | None = None  # local features confirm it (None: not checked)
    copy_score: float | None = None  # score minus the pair's background similarity (lookalike.copyindex)

    def as_dict(self) -> dict:
        return {"id": self.id, "path": self.path, "relative_path": self.relative_path, "score": round(self.score, 6),
                "exact": self.exact, "verified": self.verified,
                "copy_score": None if self.copy_score is None else round(self.copy_score, 6),
                "width": self.width, "height": self.height, "size": self.size}


@dataclass
class DuplicateGroup:
    keeper: Member
    others: list[Member] = field(default_factory=list)
    # pairs over the threshold that the group-diameter rule kept apart: (member here, image elsewhere, score)
    links: list[tuple[str, str, float]] = field(default_factory=list)

    @property
    def members(self) -> list[Member]:
        return [self.keeper, *self.others]

    def as_dict(self) -> dict:
        return {"keeper": self.keeper.as_dict(), "duplicates": [m.as_dict() for m in self.others],
                "links": [{"member": a, "other": b, "score": round(s, 6)} for a, b, s in self.links]}


def default_threshold(model_id: str, calibrated: dict | None = None) -> float:
    if calibrated and model_id in calibrated:
        return float(calibrated[model_id])
    return DEFAULT_THRESHOLDS.get(model_id, FALLBACK_THRESHOLD)


def candidate_pairs(vectors, matrix: np.ndarray, ids: np.ndarray, k: int, floor: float,
                    chunk: int = 4096) -> list[tuple[float, int, int]]:
    """(score, position_a, position_b) with a < b for every kNN pair scoring at least `floor`."""
    pairs: dict[tuple[int, int], float] = {}
    for start in range(0, len(ids), chunk):
        queries = matrix[start:start + chunk].astype(np.float32)
        found = vectors.search(queries, k + 1, candidates=DUPES_CANDIDATES_PER_RESULT * (k + 1))
        positions = np.searchsorted(ids, found.ids)
        for row, (cols, scores) in enumerate(zip(positions, found.scores, strict=True)):
            a = start + row
            for b, score in zip(cols, scores, strict=True):
                if score < floor:
                    break
                if b != a and b < len(ids):
                    key = (min(a, b), max(a, b))
                    pairs[key] = max(pairs.get(key, -1.0), float(score))
    return sorted(((s, a, b) for (a, b), s in pairs.items()), reverse=True)


class _Groups:
    """Union of positions under a complete-linkage constraint checked on the stored vectors."""

    def __init__(self, matrix: np.ndarray, pair_scores: dict[tuple[int, int], float] | None = None) -> None:
        self.matrix = matrix
        self.pair_scores = pair_scores or {}  # found through copy variants: may beat the own-vector cosine
        self.group_of: dict[int, list[int]] = {}

    def members(self, position: int) -> list[int]:
        return self.group_of.get(position, [position])

    def try_merge(self, a: int, b: int, min_score: float) -> bool:
        group_a, group_b = self.members(a), self.members(b)
        if group_a is group_b or a in group_b:
            return False
        cross = self.matrix[group_a].astype(np.float32) @ self.matrix[group_b].astype(np.float32).T
        if self.pair_scores:
            for i, x in enumerate(group_a):
                for j, y in enumerate(group_b):
                    cross[i, j] = max(cross[i, j], self.pair_scores.get((min(x, y), max(x, y)), -1.0))
        if cross.min() < min_score:
            return False
        merged = group_a + group_b
        for position in merged:
            self.group_of[position] = merged
        return True

    def groups(self) -> list[list[int]]:
        unique = {id(group): group for group in self.group_of.values()}
        return [sorted(group) for group in unique.values()]


def find_duplicates(
    index,
    threshold: float | None = None,
    group_min_score: float | None = None,
    k: int = 20,
    keep: Sequence[str] = ("resolution", "size", "oldest"),
    verify: bool = False,
) -> list[DuplicateGroup]:
    """Groups of duplicates in an index, largest groups first. See the module docstring for the method."""
    for rule in keep:
        if rule not in KEEP_RULES:
            raise LookalikeError(f"unknown keep rule '{rule}': choose from {', '.join(KEEP_RULES)}")
    model_id, ids, matrix, searcher = _dupes_vectors(index)
    threshold = threshold if threshold is not None else default_threshold(
        model_id, index.catalog.get_meta("thresholds"))
    group_min_score = group_min_score if group_min_score is not None else threshold - 0.05
    if len(ids) < 2:
        return []
    floor = min(threshold, RESCUE_FLOOR) if verify else threshold
    # Rescue candidates are verified one by one, so keep their number small: a few neighbours per image.
    pairs = candidate_pairs(searcher, matrix, ids, min(k, 5) if verify else k, floor)
    verifier = _Verifier(index, ids) if verify else None
    groups = _Groups(matrix, {(a, b): s for s, a, b in pairs})
    refused: list[tuple[float, int, int]] = []
    verified_pairs: dict[tuple[int, int], bool] = {}
    for score, a, b in pairs:
        if verifier is not None and score < SURE_SCORE:
            verified_pairs[(a, b)] = verifier.check(a, b)
            if not verified_pairs[(a, b)]:
                continue  # unconfirmed rescue candidate, or a pair the local features contradict
        merged = groups.try_merge(a, b, group_min_score if score >= threshold else min(group_min_score, RESCUE_FLOOR))
        if not merged and score >= threshold and groups.members(a) is not groups.members(b):
            refused.append((score, a, b))
    details = index.catalog.details(int(ids[p]) for group in groups.groups() for p in group)
    result = [_describe(index, ids, matrix, group, details, keep, verified_pairs if verify else None)
              for group in groups.groups()]
    _attach_links(index, ids, groups, result, refused)
    from lookalike.copyindex import attach_copy_scores

    attach_copy_scores(result, ids, matrix, searcher)
    _mark_exact(index, result, details)
    return sorted(result, key=lambda g: (-len(g.others), g.keeper.relative_path))


def _dupes_vectors(index):
    """(model, ids, own vectors, searcher): the index's copy model with its variants when it has one
    (lookalike.copyindex), else the main model's vectors and store."""
    from lookalike.copyindex import copy_vectors

    copy = copy_vectors(index)
    if copy is not None:
        return copy
    ids, matrix, _ = index.catalog.all_vectors(index.dim)
    return index.model_id, ids, matrix, index.vectors()


def _attach_links(index, ids, groups: _Groups, result: list[DuplicateGroup], refused) -> None:
    """Pairs the group-diameter rule refused are reported as links on the group of one of them, not lost."""
    if not refused:
        return
    by_member = {m.id: group for group in result for m in group.members}
    paths = index.catalog.paths_for({int(ids[p]) for _, a, b in refused for p in (a, b)})
    for score, a, b in refused:
        id_a, id_b = int(ids[a]), int(ids[b])
        if id_a not in by_member:
            id_a, id_b = id_b, id_a
        if id_a in by_member:
            by_member[id_a].links.append((paths[id_a], paths[id_b], float(score)))


class _Verifier:
    def __init__(self, index, ids: np.ndarray) -> None:
        from lookalike.verify import FeatureCache

        self.index, self.ids, self.cache = index, ids, FeatureCache()
        self.paths = index.catalog.paths_for(ids.tolist())

    def _features(self, position: int):
        from lookalike.images import load_image

        image_id = int(self.ids[position])
        try:
            return self.cache.features(image_id, load_image(self.index.read(self.paths[image_id])))
        except ImageError:
            return None, None

    def check(self, a: int, b: int) -> bool:
        from lookalike.verify import verify_features

        return verify_features(self._features(a), self._features(b)).verified


def _describe(index, ids, matrix, group, details, keep, verified_pairs) -> DuplicateGroup:
    members = []
    for position in group:
        path, width, height, size, mtime_ns, _, _ = details[int(ids[position])]
        members.append((position, Member(int(ids[position]), path, index.source.full_path(path), width, height, size,
                                         mtime_ns)))
    members.sort(key=lambda pm: keeper_key(pm[1], keep))
    (keeper_position, keeper), rest = members[0], members[1:]
    for position, member in rest:
        score = matrix[position].astype(np.float32) @ matrix[keeper_position].astype(np.float32)
        member.score = float(np.clip(score, -1.0, 1.0))
        if verified_pairs is not None:
            pair = (min(position, keeper_position), max(position, keeper_position))
            member.verified = verified_pairs.get(pair)
    return DuplicateGroup(keeper, [m for _, m in sorted(rest, key=lambda pm: -pm[1].score)])


def keeper_key(member: Member, keep: Sequence[str]) -> tuple:
    """Sort key: the first member under it is the one to keep."""
    parts = []
    for rule in keep:
        parts.append({
            "resolution": -member.width * member.height,
            "size": -member.size,
            "oldest": member.mtime_ns,
            "newest": -member.mtime_ns,
            "shortest-path": len(member.relative_path),
        }[rule])
    return (*parts, member.relative_path)


def pixel_hash(source) -> str | None:
    """MD5 of the decoded pixels of a path or of encoded bytes (None when unreadable)."""
    from lookalike.compare import pixel_md5
    from lookalike.images import load_image

    try:
        return pixel_md5(load_image(source))
    except ImageError:
        return None


def _mark_exact(index, groups: list[DuplicateGroup], details) -> None:
    """Identical decoded pixels = exact duplicate, whatever the metadata. Hashes are computed once and stored."""
    new_hashes = {}

    def hash_of(member: Member) -> str | None:
        _, _, _, _, _, content_hash, stored = details[member.id]
        if stored is None and member.id not in new_hashes:
            new_hashes[member.id] = pixel_hash(index.read(member.relative_path))
        return stored or new_hashes[member.id]

    for group in groups:
        keeper_detail = details[group.keeper.id]
        for member in group.others:
            if details[member.id][5] == keeper_detail[5]:  # byte-identical files
                member.exact = True
            elif member.score >= 0.99 and (member.width, member.height) == (group.keeper.width, group.keeper.height):
                member.exact = hash_of(member) is not None and hash_of(member) == hash_of(group.keeper)
    if new_hashes:
        index.catalog.set_pixel_hashes({i: h for i, h in new_hashes.items() if h})


def find_in_index(index, folder: str | os.PathLike, threshold: float | None = None,
                  k: int = 5) -> list[tuple[str, list]]:
    """Cross-set mode: for each image of `folder`, the images of `index` it duplicates (empty when new)."""
    from lookalike.images import scan
    from lookalike.indexer import embed_files

    threshold = threshold if threshold is not None else default_threshold(
        index.model_id, index.catalog.get_meta("thresholds"))
    files = scan(folder).files
    found = []
    for file, vector, error in embed_files(files, index.embedder, path_of=lambda f: f.path):
        if error is not None:
            found.append((file.relpath, error))
            continue
        [result] = index.search_vectors(vector[None], [file.relpath], k=k, min_score=threshold)
        found.append((file.relpath, result.matches))
    return found


# -- outputs and actions ---------------------------------------------------------------------------

def write_csv(groups: list[DuplicateGroup], out) -> None:
    writer = csv.writer(out)
    writer.writerow(["group", "role", "path", "score", "exact", "verified", "width", "height", "size"])
    for number, group in enumerate(groups, 1):
        for member in group.members:
            role = "keep" if member is group.keeper else "duplicate"
            writer.writerow([number, role, member.path, f"{member.score:.6f}", member.exact, member.verified,
                             member.width, member.height, member.size])


def apply_actions(groups: list[DuplicateGroup], root: Path, move_to: Path | None = None,
                  link_to: Path | None = None, dry_run: bool = True) -> list[str]:
    """Move duplicates out of the way (`move_to`, keeping their relative paths) or lay out every group as
    symlinks for review (`link_to`). Never deletes. Returns what was (or, dry run, would be) done."""
    if root is None:
        raise LookalikeError("--move-to and --link-to work on local folders only")
    done = []
    for number, group in enumerate(groups, 1):
        if link_to is not None:
            for member in group.members:
                role = "keep" if member is group.keeper else "dup"
                target = link_to / f"group-{number:04d}" / f"{role}--{member.relative_path.replace('/', '--')}"
                done.append(f"link {target} -> {member.path}")
                if not dry_run:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if not target.is_symlink():
                        target.symlink_to(member.path)
        if move_to is not None:
            for member in group.others:
                target = move_to / member.relative_path
                done.append(f"move {member.path} -> {target}")
                if not dry_run:
                    if target.exists():
                        raise LookalikeError(f"{target} already exists; nothing was overwritten")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(member.path, target)
    return done


def thumbnail_data_uri(source, size: int = 200) -> str:
    """A small JPEG as a data: URI, from a path or from encoded bytes ("" when unreadable)."""
    import base64

    from lookalike.images import load_image

    try:
        image = load_image(source, draft_size=size)
    except ImageError:
        return ""
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def write_html_report(groups: list[DuplicateGroup], out_file: Path, title: str = "lookalike duplicates",
                      read=None) -> None:
    """A self-contained page (thumbnails embedded) with each group side by side and the keeper marked.
    `read(relative_path)` fetches images of remote sources (see `Index.read`)."""
    from html import escape

    cards = []
    for number, group in enumerate(groups, 1):
        tiles = []
        for member in group.members:
            is_keeper = member is group.keeper
            badges = "KEEP" if is_keeper else f"{member.score:.3f}" + (" · exact" if member.exact else "") + (
                " · verified" if member.verified else "")
            tiles.append(
                f'<figure class="{"keep" if is_keeper else "dup"}"><img loading="lazy" alt="" '
                f'src="{thumbnail_data_uri(read(member.relative_path) if read else member.path)}">'
                f'<figcaption><b>{escape(badges)}</b><br>'
                f'{escape(member.relative_path)}<br>{member.width}×{member.height} · {member.size / 1024:.0f} KB'
                "</figcaption></figure>"
            )
        cards.append(f'<section><h2>Group {number} · {len(group.members)} images</h2>{"".join(tiles)}</section>')
    out_file.write_text(
        f"<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{REPORT_CSS}</style><h1>{escape(title)}</h1>"
        f"<p>{len(groups)} groups. The suggested keeper has a green frame; scores are cosine similarity to it.</p>"
        + "".join(cards),
        encoding="utf-8",
    )


REPORT_CSS = """
body{font:14px system-ui,sans-serif;margin:1rem;background:#f6f7f9;color:#222}
section{background:#fff;border-radius:8px;padding:.5rem 1rem;margin:0 0 1rem;box-shadow:0 1px 3px #0002}
h2{font-size:15px}figure{display:inline-block;vertical-align:top;margin:.3rem;width:210px}
img{max-width:200px;max-height:200px;border:4px solid #ddd;border-radius:4px}
.keep img{border-color:#2a9d50}figcaption{font-size:12px;word-break:break-all}
"""
