"""Response models of the JSON API, so /docs shows what each route answers (and FastAPI checks it).

They describe the dictionaries the library's `as_dict()` methods build; `extra="allow"` lets a field the library
adds later reach clients before it is documented here, instead of being silently dropped.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImageRef(Open):
    id: int = Field(description="The image's id in the index (use it with /api/search/similar and thumbnails).")
    relative_path: str = Field(description="The file's path inside the indexed folder.")
    thumbnail: str = Field(description="URL of a JPEG thumbnail (send the token as for any route).")


class SearchMatch(ImageRef):
    score: float = Field(description="Cosine similarity to the query, in [-1, 1].")
    percent: float = Field(description="The score mapped to 0-100 %.")
    copy_score: float | None = Field(None, description="copies=true: the cosine minus a share of the query's "
                                     "background (its best similarity to another image); high only for copies.")
    verification: dict | None = Field(None, description="verify=true: {verified, inliers, mirrored, region, ...}.")


class SearchResults(Open):
    query: str = Field(description="What was searched: a file name, text, URL or the source image's name.")
    method: str = Field(description="'exact', or the approximate structure that answered.")
    results: list[SearchMatch]


class Info(Open):
    model: str
    dim: int
    images: int
    skipped: int = Field(description="Files that could not be read (with a reason in the catalog).")
    size_bytes: int
    created_at: float | None
    updated_at: float | None
    preprocessing: dict
    store: str
    search_structure: str
    settings: dict
    text_search: bool = Field(description="Whether the model can search by text.")


class Region(Open):
    in_: str = Field(alias="in", description="relative_path of the containing image (the keeper or this one).")
    quad: list[list[float]] = Field(description="The four corners [x, y] of the other image in the containing "
                                    "one, in its pixel coordinates (clockwise from the top left).")


class DupeMember(ImageRef):
    score: float = Field(description="Cosine similarity to the suggested keeper.")
    exact: bool = Field(description="Identical decoded pixels to the keeper.")
    verified: bool | None = Field(description="Local features confirm the match (null: not checked).")
    width: int
    height: int
    size: int = Field(description="File size in bytes.")
    mtime: float | None = Field(None, description="Modification time (Unix seconds).")
    folder: str | None = Field(None, description="The folder the file is in, from the indexed folder's root.")
    region: Region | None = Field(None, description="Verified copies: where the pair overlaps.")


class DupeGroup(Open):
    keeper: DupeMember = Field(description="The suggested keeper.")
    duplicates: list[DupeMember]
    reason: str | None = Field(None, description="Why the keeper was suggested.")


class Dupes(Open):
    groups: list[DupeGroup]
    threshold: float | None = Field(None, description="The cosine threshold used.")
    threshold_source: str | None = Field(None, description="Where it came from: request, calibrated, default.")


class Cluster(Open):
    cluster: int = Field(description="Cluster number; -1 holds the outliers (hdbscan).")
    images: list[ImageRef]


class Clusters(Open):
    method: str
    k: int
    silhouette: float | None
    clusters: list[Cluster]


class Comparison(Open):
    model: str
    cosine: float
    percent: float
    file_md5_equal: bool | None
    pixel_md5_equal: bool | None
    phash_distance: int
    dhash_distance: int
    hash_bits: int
    sizes: list[list[int]]


class Recognition(Open):
    query: str
    label: str = Field(description="The best category, or 'unknown' below its threshold.")
    category: str | None
    score: float
    nearest: str | None
    runner_up: str | None
    runner_up_score: float | None
    threshold: float
    accepted: bool


class Health(Open):
    status: str


class JobProgress(Open):
    done: int
    total: int | None
    what: str | None = Field(None, description="What is counted: 'verifying pairs', 'moving files', ...")


class Job(Open):
    id: str
    kind: str
    status: str = Field(description="queued, running, done, failed or cancelled.")
    progress: JobProgress
    elapsed_s: float
    result: Any = Field(description="The route's answer once done (e.g. the duplicate groups).")
    error: str | None
    url: str = Field(description="Where to poll this job.")
    cancel_requested: bool = Field(False, description="POST {url}/cancel was called; the job stops at its next "
                                   "step (status 'cancelled', result: what it did before stopping).")


class BrowseImage(ImageRef):
    width: int
    height: int
    size: int
    mtime: float
    folder: str


class Browse(Open):
    total: int = Field(description="Images matching the filter.")
    offset: int
    limit: int
    sort: str
    folder: str | None
    images: list[BrowseImage]


class Folders(Open):
    folders: list[dict] = Field(description="[{folder, images}] for every folder holding indexed images.")


class MovePlan(BaseModel):
    move: list[int] = Field(description="Ids of the images to move out of the collection (never deleted).",
                            max_length=100_000)
    keep: list[int] = Field(default_factory=list, description="Ids kept (checked: none may also be moved).",
                            max_length=100_000)


class MoveResult(Open):
    batch: str = Field(description="The trash folder's batch name.")
    moved: list[dict] = Field(description="[{id, from, to}] relative to the indexed folder.")
    manifest: str = Field(description="The move manifest (JSON Lines), relative to the indexed folder: give it to "
                                      "/api/dupes/undo or to `lookalike dupes --undo`.")


class UndoRequest(BaseModel):
    manifest: str = Field(description="A move manifest relative to the indexed folder (/api/dupes/manifests).",
                          max_length=4000)


class UndoResult(Open):
    manifest: str
    restored: list[str]


class PendingManifest(Open):
    manifest: str = Field(description="Relative to the indexed folder.")
    created: float
    files: int = Field(description="Moved files not yet put back.")


class Manifests(Open):
    manifests: list[PendingManifest]
