"""What the verbs answer: plain dataclasses with `as_dict()`, the JSON the CLI prints and the server sends."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Match:
    id: int
    path: str  # absolute path (or URL) of the image file
    relative_path: str  # relative to the indexed folder: the catalog's key
    score: float  # cosine similarity in [-1, 1], higher = more similar
    copy_score: float | None = None  # copy lookups: score minus β × the query's second-best (lookalike.copyindex)
    verification: dict | None = None  # with verify=True: {"verified", "inliers", "mirrored", "region", ...}

    @property
    def percent(self) -> float:
        """The (cos + 1) / 2 percentage that tutorials show."""
        return (self.score + 1) * 50

    def as_dict(self) -> dict:
        found = {"id": self.id, "path": self.path, "relative_path": self.relative_path,
                 "score": round(self.score, 6), "percent": round(self.percent, 2)}
        if self.copy_score is not None:
            found["copy_score"] = round(self.copy_score, 6)
        if self.verification is not None:
            found["verification"] = self.verification
        return found


@dataclass(frozen=True)
class SearchResult:
    query: str
    matches: list[Match]
    method: str  # "exact" or the ANN structure used

    def as_dict(self) -> dict:
        return {"query": self.query, "method": self.method, "results": [m.as_dict() for m in self.matches]}


@dataclass(frozen=True)
class IndexInfo:
    root: str
    db: str
    model: str
    dim: int
    images: int
    skipped: int
    size_bytes: int
    created_at: float | None
    updated_at: float | None
    preprocessing: dict
    store: str = "embedded (SQLite + FAISS)"
    search_structure: str = ""  # as of the last search ('' before the first)
    settings: dict = field(default_factory=dict)  # IndexSettings, as stored
    models: dict | None = None  # what serves what (search, text, dupes and copy lookups), vectors per model
    threshold: dict | None = None  # the near-duplicate threshold in use and its source (see thresholds.py)

    def as_dict(self) -> dict:
        return dict(self.__dict__)
