"""What `dupes` writes for people: CSV rows and a self-contained HTML review page (thumbnails embedded, the
keeper framed and the reason it was kept, the region a verified copy covers drawn on its container)."""

from __future__ import annotations

import csv
import io
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.errors import ImageError

if TYPE_CHECKING:
    from lookalike.dupes import DuplicateGroup, Member


def write_csv(groups: list[DuplicateGroup], out) -> None:
    writer = csv.writer(out)
    writer.writerow(["group", "role", "path", "score", "exact", "verified", "width", "height", "size", "note"])
    for number, group in enumerate(groups, 1):
        for member in group.members:
            role = "keep" if member is group.keeper else "duplicate"
            note = f"kept: {group.reason}" if member is group.keeper else member.note
            writer.writerow([number, role, member.path, f"{member.score:.6f}", member.exact, member.verified,
                             member.width, member.height, member.size, note])


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
    """A self-contained page (thumbnails embedded) with each group side by side, the keeper marked with the
    reason it was kept, and each verified copy's region outlined on the image that contains it.
    `read(relative_path)` fetches images of remote sources (see `Index.read`)."""
    cards = []
    for number, group in enumerate(groups, 1):
        tiles = [_tile(member, group, read) for member in group.members]
        cards.append(f'<section><h2>Group {number} · {len(group.members)} images</h2>'
                     f'<p class="why">Kept: {escape(group.reason)}</p>{"".join(tiles)}</section>')
    out_file.write_text(
        f"<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{REPORT_CSS}</style><h1>{escape(title)}</h1>"
        f"<p>{len(groups)} groups. The suggested keeper has a green frame; scores are cosine similarity to it; "
        "an orange outline shows where a verified copy sits in the image that contains it.</p>"
        + "".join(cards),
        encoding="utf-8",
    )


def _tile(member: Member, group: DuplicateGroup, read) -> str:
    is_keeper = member is group.keeper
    badges = "KEEP" if is_keeper else f"{member.score:.3f}" + (" · exact" if member.exact else "") + (
        " · verified" if member.verified else "")
    outlines = [m.region["quad"] for m in group.others
                if m.region and m.region["in"] == member.relative_path and (is_keeper or m is member)]
    svg = ""
    if outlines:
        polygons = "".join(f'<polygon points="{" ".join(f"{x},{y}" for x, y in quad)}"/>' for quad in outlines)
        svg = (f'<svg viewBox="0 0 {member.width} {member.height}" preserveAspectRatio="none" '
               f'aria-label="region of a copy">{polygons}</svg>')
    note = f"<br><i>{escape(member.note)}</i>" if member.note and not is_keeper else ""
    return (
        f'<figure class="{"keep" if is_keeper else "dup"}"><div class="frame"><img loading="lazy" alt="" '
        f'src="{thumbnail_data_uri(read(member.relative_path) if read else member.path)}">{svg}</div>'
        f'<figcaption><b>{escape(badges)}</b>{note}<br>'
        f'{escape(member.relative_path)}<br>{member.width}×{member.height} · {member.size / 1024:.0f} KB'
        "</figcaption></figure>"
    )


REPORT_CSS = """
body{font:14px system-ui,sans-serif;margin:1rem;background:#f6f7f9;color:#222}
section{background:#fff;border-radius:8px;padding:.5rem 1rem;margin:0 0 1rem;box-shadow:0 1px 3px #0002}
h2{font-size:15px}figure{display:inline-block;vertical-align:top;margin:.3rem;width:210px}
img{max-width:200px;max-height:200px;border:4px solid #ddd;border-radius:4px}
.keep img{border-color:#2a9d50}figcaption{font-size:12px;word-break:break-all}
.frame{position:relative;display:inline-block}.frame img{display:block}
.frame svg{position:absolute;inset:4px;width:calc(100% - 8px);height:calc(100% - 8px);pointer-events:none}
polygon{fill:#f808;stroke:#e60;stroke-width:2px;vector-effect:non-scaling-stroke}.why{color:#2a7a40;margin:.2rem 0}
"""
