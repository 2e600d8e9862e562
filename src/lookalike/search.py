"""Queries: images (path, URL, bytes, PIL) and texts, mixed with weights, turned into one query vector.

The query syntax follows rclip: terms joined by ' + ' or ' - ', each optionally weighted `W:term`:

    "2:golden retriever + ./pool.jpg - fruit"

A term is an image when it is an http(s) URL or an existing file, and text otherwise; a term that looks
like an image file name but does not exist is an error, not a silent text search.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.errors import QueryError
from lookalike.images import IMAGE_SUFFIXES, is_url, open_query_image
from lookalike.models.base import Embedder, l2_normalize

_WEIGHT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*:(?!//)(.+)$", re.S)
_OPERATOR = re.compile(r"\s+([+-])\s+")


@dataclass(frozen=True)
class Term:
    weight: float
    kind: str  # "image" or "text"
    value: object  # path/URL string, bytes or PIL image for images; the text for texts

    def describe(self) -> str:
        shown = self.value if isinstance(self.value, str) else f"<{type(self.value).__name__}>"
        return shown if self.weight == 1 else f"{self.weight:g}:{shown}"


@dataclass(frozen=True)
class Query:
    terms: tuple[Term, ...] = field(default_factory=tuple)
    label: str = ""

    def __add__(self, other: Query) -> Query:
        return Query(self.terms + other.terms, " + ".join(filter(None, (self.label, other.label))))

    @property
    def modalities(self) -> set[str]:
        return {term.kind for term in self.terms}


def classify_term(text: str) -> str:
    if is_url(text) or os.path.isfile(os.path.expanduser(text)):
        return "image"
    if Path(text).suffix.lower() in IMAGE_SUFFIXES:
        raise QueryError(f"image file not found: {text}")
    return "text"


def parse_query(expression: str) -> Query:
    """Parse `"2:golden retriever + ./pool.jpg - fruit"`; a leading '-' negates the first term."""
    if os.path.isfile(os.path.expanduser(expression)) or is_url(expression):
        return Query((Term(1.0, "image", expression),), expression)  # a path with ' - ' in its name
    terms = []
    sign = 1.0
    pieces = _OPERATOR.split(" " + expression.strip() + " ")
    for position, piece in enumerate(pieces):
        if position % 2 == 1:
            sign = 1.0 if piece == "+" else -1.0
            continue
        piece = piece.strip()
        if not piece:
            continue
        weight = 1.0
        if match := _WEIGHT.match(piece):
            weight, piece = float(match.group(1)), match.group(2).strip()
        if piece.startswith("-") and not os.path.exists(piece):
            weight, piece = -weight, piece[1:].strip()
        if piece:
            terms.append(Term(sign * weight, classify_term(piece), piece))
    if not terms:
        raise QueryError(f"empty query: {expression!r}")
    return Query(tuple(terms), expression)


def make_query(image=None, text=None, query: str | Query | None = None) -> Query:
    """The Python API's keyword arguments as one Query (image and text terms add up)."""
    combined = Query()
    if query is not None:
        combined = combined + (query if isinstance(query, Query) else parse_query(query))
    if image is not None:
        label = str(image) if isinstance(image, (str, os.PathLike)) else f"<{type(image).__name__}>"
        value = str(image) if isinstance(image, os.PathLike) else image
        combined = combined + Query((Term(1.0, "image", value),), label)
    for piece in [text] if isinstance(text, str) else (text or []):
        combined = combined + parse_text_term(piece)
    if not combined.terms:
        raise QueryError("give an image, a text or a query to search for")
    return combined


def parse_text_term(text: str) -> Query:
    """`--text "red bus"` adds, `--text "-night"` subtracts, `--text "2:sunset"` weighs."""
    weight = 1.0
    body = text.strip()
    if match := _WEIGHT.match(body):
        weight, body = float(match.group(1)), match.group(2).strip()
    if body.startswith("-"):
        weight, body = -weight, body[1:].strip()
    if not body:
        raise QueryError(f"empty text term: {text!r}")
    return Query((Term(weight, "text", body),), text)


def query_vector(embedder: Embedder, query: Query) -> np.ndarray:
    """Weighted sum of the terms' unit vectors, re-normalised: the direction the query points to."""
    total = np.zeros(embedder.dim, np.float32)
    texts = [term for term in query.terms if term.kind == "text"]
    images = [term for term in query.terms if term.kind == "image"]
    if texts:
        vectors = embedder.embed_texts([str(term.value) for term in texts])
        total += sum(term.weight * vector for term, vector in zip(texts, vectors, strict=True))
    if images:
        # The indexer's decode exactly (JPEG draft size included), so an indexed file is its own first hit at 1.0.
        decoded = [_open(term.value, embedder.draft_size) for term in images]
        vectors = embedder.embed_images(decoded)
        total += sum(term.weight * vector for term, vector in zip(images, vectors, strict=True))
    if np.linalg.norm(total) < 1e-6:
        raise QueryError(f"the terms of {query.label!r} cancel out; nothing left to search for")
    return l2_normalize(total)


def _open(value, draft_size: int | None = None) -> Image.Image:
    if isinstance(value, str):
        value = os.path.expanduser(value)
    return open_query_image(value, draft_size)


def break_point(scores: list[float], threshold: float | None = None, min_gap: float = 0.1) -> tuple[int, str] | None:
    """Where results stop being matches: (position of the first non-match, why), or None.

    With a threshold (image queries: the index's near-duplicate threshold) the first result below it, if the top
    one clears it. Otherwise the largest drop between consecutive scores, if it is at least `min_gap` and three
    times the typical drop (real matches 0.83-0.86 then the rest <= 0.32 is such a gap; a smooth decline is not).
    """
    if not scores:
        return None
    if threshold is not None and scores[0] >= threshold:
        below = next((i for i, s in enumerate(scores) if s < threshold), None)
        return None if below is None else (below, f"cosine under the near-duplicate threshold {threshold:.2f}")
    if len(scores) < 2:
        return None
    drops = -np.diff(np.asarray(scores, np.float64))
    position = int(np.argmax(drops))
    typical = float(np.median(np.delete(drops, position))) if len(drops) > 1 else 0.0
    if drops[position] >= min_gap and drops[position] >= 3 * typical:
        return position + 1, f"a gap of {drops[position]:.2f} in the scores"
    return None
