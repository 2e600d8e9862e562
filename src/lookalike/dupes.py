"""Exact and near-duplicate groups, without an N×N similarity matrix.

1. Candidate pairs come from a chunked k-nearest-neighbour search over the index (memory: chunk × k, not N²).
2. Pairs at or above the threshold become edges; with verification, weaker pairs that local features confirm
   (crops the embedding misses) are rescued, and candidate pairs the features contradict are dropped.
3. Edges are merged strongest first, but a merge that would put two images below `group_min_score` of each
   other into one group is refused (complete linkage), so chains A~B~C~… never merge unrelated images.
4. Within a group, files with identical decoded pixels (metadata-only differences) are marked exact, and a
   keeper is suggested: the original the others derive from (not a crop, framed or overlaid copy, see
   `keeper.py`), then the best file facts; each keeper comes with the reason it was chosen.
5. Verification only ever adds pairs (rescues): a pair the embedding accepts is never dropped for want of
   matching keypoints (flat images, small copies and heavy edits have too few).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lookalike.dupes_exact import PixelTwins, mark_exact, oldest_twin, pixel_hash
from lookalike.dupes_grouping import Groups, candidate_pairs, copy_score_pairs, neighbour_backgrounds
from lookalike.dupes_images import RunImages
from lookalike.errors import LookalikeError
from lookalike.indexer import default_workers
from lookalike.keeper import DEFAULT_KEEP, KEEP_RULES, jpeg_quality, metadata_key, order_members
from lookalike.thresholds import threshold_info

RESCUE_FLOOR = 0.30  # with verification, candidates down to this cosine are checked with local features
DUPES_CANDIDATES_PER_RESULT = 32  # near-duplicates top the PQ ranking: no need for the tuned top-10 pool
# Copy-score grouping (copy models): a pair scores its cosine minus β/2 × each image's similarity to its
# COPY_BACKGROUND_RANK-th neighbour, so sibling tiles and look-alikes of many images score low; pairs at or above
# SURE_COPY cosine are copies whatever their background (an original with many copies), pairs under COPY_FLOOR
# never (without verification): in a small collection two unrelated images can be each other's best match. Measured with
# benchmarks/vs_immaculate.py's sweep (backgrounds at ranks 2-8, β 0.5-1: rank 3, β 1 best; docs/performance.md).
COPY_BETA = 1.0
COPY_BACKGROUND_RANK = 3
SURE_COPY = 0.90
COPY_FLOOR = 0.50
SURE_SCORE = 0.98  # pairs this close need no geometric confirmation (and flat images have no features)


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
    quality: int | None = None  # estimated JPEG quality (lossless formats: 90)
    note: str = ""  # what this copy is: "cropped copy of a.jpg", "framed copy of …", "overlaid copy of …"
    region: dict | None = None  # where it sits in the keeper, or the keeper in it: {"in", "quad"} (verified only)
    copy_score: float | None = None  # score minus the pair's background similarity (lookalike.copyindex)

    def as_dict(self) -> dict:
        return {"id": self.id, "path": self.path, "relative_path": self.relative_path, "score": round(self.score, 6),
                "exact": self.exact, "verified": self.verified, "width": self.width, "height": self.height,
                "size": self.size, "mtime_ns": self.mtime_ns, "jpeg_quality": self.quality, "note": self.note or None,
                "region": self.region, "copy_score": None if self.copy_score is None else round(self.copy_score, 6)}


@dataclass
class DuplicateGroup:
    keeper: Member
    others: list[Member] = field(default_factory=list)
    reason: str = ""  # why the keeper was chosen
    # pairs over the threshold that the group-diameter rule kept apart: (member here, image elsewhere, score)
    links: list[tuple[str, str, float]] = field(default_factory=list)

    @property
    def members(self) -> list[Member]:
        return [self.keeper, *self.others]

    def as_dict(self) -> dict:
        return {"keeper": self.keeper.as_dict(), "reason": self.reason,
                "duplicates": [m.as_dict() for m in self.others],
                "links": [{"member": a, "other": b, "score": round(s, 6)} for a, b, s in self.links]}


def find_duplicates(
    index,
    threshold: float | None = None,
    group_min_score: float | None = None,
    copy_threshold: float | None = None,
    k: int = 20,
    keep: Sequence[str] = DEFAULT_KEEP,
    verify: bool = False,
    progress=None,
) -> list[DuplicateGroup]:
    """Groups of duplicates in an index, largest groups first. See the module docstring for the method.

    `progress(done, total, what)` is called as candidate pairs are verified and groups described."""
    for rule in keep:
        if rule not in KEEP_RULES:
            raise LookalikeError(f"unknown keep rule '{rule}': choose from {', '.join(KEEP_RULES)}")
    model_id, ids, matrix, searcher = _dupes_vectors(index)
    if len(ids) < 2:
        return []
    copy_mode = _copy_mode(index, model_id, threshold, copy_threshold)
    threshold = copy_mode if copy_mode is not None else threshold if threshold is not None else threshold_info(
        model_id, index.catalog).value
    group_min_score = group_min_score if group_min_score is not None else threshold - 0.05
    cosine_floor = threshold if copy_mode is None else COPY_FLOOR
    floor = min(cosine_floor, RESCUE_FLOOR) if verify else cosine_floor
    # Rescue candidates are verified one by one, so keep their number small: a few neighbours per image.
    pairs = candidate_pairs(searcher, matrix, ids, min(k, 5) if verify else k, floor,
                            candidates_per_result=DUPES_CANDIDATES_PER_RESULT)
    pair_scores = {(a, b): s for s, a, b in pairs}
    offsets = None
    if copy_mode is not None:
        offsets = COPY_BETA / 2 * neighbour_backgrounds(searcher, matrix, ids, COPY_BACKGROUND_RANK)
        pairs = copy_score_pairs(pairs, offsets, SURE_COPY, COPY_FLOOR)
    images = RunImages(index, ids)
    groups = Groups(matrix, pair_scores, offsets, SURE_COPY, COPY_FLOOR)
    refused: list[tuple[float, int, int]] = []
    for done, (score, a, b) in enumerate(pairs, 1):
        if score < threshold:  # a rescue candidate: only local features can admit it
            if verify and images.verify(a, b).verified:
                groups.try_merge(a, b, min(group_min_score, RESCUE_FLOOR) if copy_mode is None else -1.0)
        elif not groups.try_merge(a, b, group_min_score) and groups.members(a) is not groups.members(b):
            refused.append((score, a, b))
        if progress is not None and verify:
            progress(done, len(pairs), "verifying pairs")
    found = groups.groups()
    details = index.catalog.details(int(ids[p]) for group in found for p in group)
    twins = _pixel_twins(index, ids, matrix, found, details)
    twins.prefetch(([int(ids[p]) for p in group] for group in found), workers=default_workers())
    result = []
    for number, group in enumerate(found, 1):
        result.append(_describe(index, ids, group, details, keep, images, verify, twins))
        images.forget()
        if progress is not None:
            progress(number, len(found), "choosing keepers")
    _attach_links(index, ids, result, refused)
    from lookalike.copyindex import attach_copy_scores

    attach_copy_scores(result, ids, matrix, searcher, offsets)
    mark_exact(result, twins)
    return sorted(result, key=lambda g: (-len(g.others), g.keeper.relative_path))


def _pixel_twins(index, ids, matrix, found: list, details) -> PixelTwins:
    position_of = {int(ids[p]): p for group in found for p in group}
    return PixelTwins(index, details, lambda a, b: float(matrix[position_of[a]].astype(np.float32)
                                                         @ matrix[position_of[b]].astype(np.float32)))


def _copy_mode(index, model_id: str, threshold, copy_threshold) -> float | None:
    """The copy-score threshold when pairs are judged by their copy score: a copy model that has one, unless
    a cosine `threshold` was asked for."""
    from lookalike.thresholds import copy_threshold_info

    info = copy_threshold_info(model_id, index.catalog) if threshold is None else None
    if info is None:
        return None
    return copy_threshold if copy_threshold is not None else info.value


def _dupes_vectors(index):
    """(model, ids, own vectors, searcher): the index's copy model with its variants when it has one
    (lookalike.copyindex), else the main model's vectors and store."""
    from lookalike.copyindex import copy_vectors

    copy = copy_vectors(index)
    if copy is not None:
        return copy
    ids, matrix, _ = index.catalog.all_vectors(index.dim)
    return index.model_id, ids, matrix, index.vectors()


def _attach_links(index, ids, result: list[DuplicateGroup], refused: list[tuple[float, int, int]]) -> None:
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


def _describe(index, ids, group, details, keep, images: RunImages, verify: bool,
              twins: PixelTwins) -> DuplicateGroup:
    members, position_of = [], {}
    for position in group:
        found = details[int(ids[position])]
        member = Member(int(ids[position]), found.path, index.source.full_path(found.path), found.width,
                        found.height, found.size, found.mtime_ns)
        if "quality" in keep and index.root is not None:
            member.quality = jpeg_quality(member.path)
        members.append(member)
        position_of[member.id] = position
    analyse = "original" in keep and images.enabled
    ordered, reason = order_members(
        members, keep,
        image_of=(lambda m: images.image(position_of[m.id])) if analyse else None,
        verify_of=(lambda m, n: images.verify(position_of[m.id], position_of[n.id])) if analyse else None)
    keeper, reason = oldest_twin(ordered, reason, twins)
    rest = [m for m in ordered if m is not keeper]
    for member in rest:
        member.score = float(np.clip(twins.similarity(member.id, keeper.id), -1.0, 1.0))
        if verify or analyse:
            check = images.verify(position_of[member.id], position_of[keeper.id])
            member.verified = check.verified if verify else None
            if check.verified:
                region = check.region()
                member.region = {"in": member.relative_path if region["in"] == "a" else keeper.relative_path,
                                 "quad": region["quad"]}
    return DuplicateGroup(keeper, sorted(rest, key=lambda m: -m.score), reason)


def keeper_key(member: Member, keep: Sequence[str]) -> tuple:
    """Sort key from file facts alone: the first member under it is the best copy."""
    return metadata_key(member, keep)


def find_in_index(index, folder: str | os.PathLike, threshold: float | None = None,
                  k: int = 5) -> list[tuple[str, list | str]]:
    """Cross-set mode: for each image of `folder`, the images of `index` it duplicates (empty when new)."""
    from lookalike.images import scan
    from lookalike.indexer import embed_files

    threshold = threshold if threshold is not None else threshold_info(index.model_id, index.catalog).value
    files = scan(folder).files
    found: list[tuple[str, list | str]] = []
    for file, vector, error in embed_files(files, index.embedder, path_of=lambda f: f.path):
        if error is not None or vector is None:
            found.append((file.relpath, error or "unreadable"))
            continue
        [result] = index.search_vectors(vector[None], [file.relpath], k=k, min_score=threshold)
        found.append((file.relpath, result.matches))
    return found




from lookalike.dupes_report import REPORT_CSS, thumbnail_data_uri, write_csv, write_html_report  # noqa: E402
from lookalike.moves import apply_actions  # noqa: E402

__all__ = ["DuplicateGroup", "Member", "REPORT_CSS", "apply_actions", "find_duplicates", "find_in_index",
           "keeper_key", "pixel_hash", "thumbnail_data_uri", "write_csv", "write_html_report"]
