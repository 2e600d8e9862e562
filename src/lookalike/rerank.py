"""`search --verify`: geometric verification of a search's candidates, which only ever promotes.

The embedding ranks; local features then check a wider pool of candidates (3x the results asked for). A candidate
they prove to be a copy of the query (a crop, a screenshot, a mirrored copy) moves up among the verified ones, in
cosine order, with where it sits; an unverified candidate keeps its cosine and its order, so verification rescues
matches and never removes one the embedding found.
"""

from __future__ import annotations

from dataclasses import replace

from lookalike.errors import ImageError

POOL_FACTOR = 3  # candidates checked per result asked for
MIN_POOL = 30


def pool_size(k: int) -> int:
    return max(k * POOL_FACTOR, MIN_POOL)


def verify_matches(index, query_image, matches: list, k: int) -> list:
    """The first k of `matches` after verification: verified copies first, each with its `verification`."""
    from lookalike.images import load_image
    from lookalike.verify import extract_features, verify_features

    query = extract_features(query_image)
    checked = []
    for match in matches:
        try:
            candidate = extract_features(load_image(index.read(match.relative_path)))
        except ImageError:
            checked.append(match)
            continue
        result = verify_features(query, candidate)
        checked.append(replace(match, verification=result.as_dict()))
    verified = [m for m in checked if m.verification and m.verification["verified"]]
    rest = [m for m in checked if not (m.verification and m.verification["verified"])]
    return (verified + rest)[:k]


def query_image_of(query):
    """The one image of a query (None when it has no image term or several)."""
    from lookalike.images import open_query_image

    images = [term.value for term in query.terms if term.kind == "image" and term.weight > 0]
    if len(images) != 1:
        return None
    value = images[0]
    if isinstance(value, str):
        import os

        value = os.path.expanduser(value)
    return open_query_image(value)
