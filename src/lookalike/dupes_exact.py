"""Exact duplicates inside a group: identical decoded pixels, and the oldest of such twins as keeper."""

from __future__ import annotations

from lookalike.errors import ImageError


def _oldest_twin(ordered: list, reason: str, image_of) -> tuple:
    """Among files with the keeper's very pixels (copies, metadata edits: their size says nothing about
    quality), keep the oldest, then the one with the shortest path."""
    from lookalike.compare import pixel_md5

    keeper = ordered[0]
    same_size = [m for m in ordered[1:] if (m.width, m.height) == (keeper.width, keeper.height)]
    if not same_size or image_of(keeper) is None:
        return keeper, reason
    pixels = pixel_md5(image_of(keeper))
    twins = [keeper, *(m for m in same_size if image_of(m) is not None and pixel_md5(image_of(m)) == pixels)]
    if len(twins) == 1:
        return keeper, reason
    oldest = min(twins, key=lambda m: (m.mtime_ns, m.relative_path.count("/"), len(m.relative_path),
                                       m.relative_path))
    if oldest is keeper:
        return keeper, f"{reason}; the oldest of {len(twins)} files with identical pixels"
    derived = [part for part in reason.split("; ") if part.startswith("the others include")]
    return oldest, "; ".join([*derived, f"the oldest of {len(twins)} files with identical pixels"])


def pixel_hash(source) -> str | None:
    """MD5 of the decoded pixels of a path or of encoded bytes (None when unreadable)."""
    from lookalike.compare import pixel_md5
    from lookalike.images import load_image

    try:
        return pixel_md5(load_image(source))
    except ImageError:
        return None


def _mark_exact(index, groups: list, details) -> None:
    """Identical decoded pixels = exact duplicate, whatever the metadata. Hashes are computed once and stored."""
    new_hashes = {}

    def hash_of(member) -> str | None:
        stored = details[member.id].pixel_hash
        if stored is None and member.id not in new_hashes:
            new_hashes[member.id] = pixel_hash(index.read(member.relative_path))
        return stored or new_hashes[member.id]

    for group in groups:
        keeper_hash = details[group.keeper.id].content_hash
        for member in group.others:
            if details[member.id].content_hash == keeper_hash:  # byte-identical files
                member.exact = True
            elif member.score >= 0.99 and (member.width, member.height) == (group.keeper.width, group.keeper.height):
                member.exact = hash_of(member) is not None and hash_of(member) == hash_of(group.keeper)
    if new_hashes:
        index.catalog.set_pixel_hashes({i: h for i, h in new_hashes.items() if h})
