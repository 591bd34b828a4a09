"""Galleries of samples in Dagster's Markdown metadata. Images: base64 PNG tiles large enough to judge
(upscaled with nearest-neighbour, so pixels stay sharp), a caption drawn under each tile, and a near
duplicate drawn beside the sample it duplicates. Tables and texts: a markdown table, each removed row
(or a text's first 200 characters) beside the kept sample it duplicates."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MIN_TILE = 64  # px: an 8×8 digit at 32 px could not be judged (issue 14)
CAPTION_LINE = 11  # px per caption line in PIL's default bitmap font


@dataclass
class Tile:
    """One sample to show: its pixels (H, W, C) in [0, 1] and the caption lines under it."""

    image: np.ndarray
    caption: Sequence[str] = ()
    partner: Tile | None = None  # drawn right beside this tile (e.g. the kept sample it duplicates)


def _tile_image(img: np.ndarray, cell: int):
    from PIL import Image

    arr = np.nan_to_num(np.clip(img, 0, 1)) * 255
    arr = arr[..., 0] if arr.shape[-1] == 1 else arr[..., :3]
    return Image.fromarray(arr.astype(np.uint8)).convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)


def _slots(tiles: Sequence[Tile]) -> list[list[Tile]]:
    """Groups drawn side by side: a tile and its partner share one slot."""
    return [[t] if t.partner is None else [t, t.partner] for t in tiles]


def tiles_png(tiles: Sequence[Tile], columns: int = 8, cell: int = MIN_TILE * 3 // 2) -> bytes:
    """PNG bytes of a grid of captioned tiles; a tile with a partner takes two adjacent cells."""
    from PIL import Image, ImageDraw

    cell = max(cell, MIN_TILE)
    flat: list[tuple[Tile, bool]] = []  # (tile, starts a new slot)
    for slot in _slots(tiles):
        if len(slot) == 2 and len(flat) % columns == columns - 1:  # keep a pair on one row
            flat.append((Tile(np.zeros((1, 1, 1))), True))
        flat += [(t, i == 0) for i, t in enumerate(slot)]
    lines = max((len(t.caption) for t, _ in flat), default=0)
    w, h = cell + 6, cell + 6 + lines * CAPTION_LINE
    rows = max(1, -(-len(flat) // columns))
    canvas = Image.new("RGB", (min(len(flat), columns) * w, rows * h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    chars = max(4, cell // 6)
    for k, (tile, _) in enumerate(flat):
        if tile.image.size <= 1:
            continue  # padding cell
        x, y = (k % columns) * w + 3, (k // columns) * h + 3
        canvas.paste(_tile_image(tile.image, cell), (x, y))
        for n, text in enumerate(tile.caption):
            draw.text((x, y + cell + 1 + n * CAPTION_LINE), str(text)[:chars], fill=(0, 0, 0))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def image_grid_png(images: np.ndarray, columns: int = 8, cell: int = MIN_TILE) -> bytes:
    """(N, H, W, C) in [0, 1] → PNG bytes of an uncaptioned grid; NaN pixels are drawn black."""
    return tiles_png([Tile(img) for img in images], columns, cell)


def png_markdown(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def gallery_markdown(images: np.ndarray, captions: list[str], limit: int = 16) -> str:
    """Markdown with an inline grid of up to `limit` samples (captions under each tile and listed)."""
    if len(images) == 0:
        return "_nothing removed_"
    images, captions = images[:limit], captions[:limit]
    tiles = [Tile(img, [c.replace("`", "")]) for img, c in zip(images, captions, strict=True)]
    lines = [png_markdown(tiles_png(tiles), "removed samples"), ""]
    lines += [f"{i + 1}. {c}" for i, c in enumerate(captions)]
    return "\n".join(lines)


def removed_markdown(tiles: Sequence[Tile], texts: Sequence[str], total: int, full_list: str) -> str:
    """A step's removed-sample gallery: the grid, "showing N of M", a caption per tile
    (the same words as under it, untruncated) and where the full list is."""
    if total == 0:
        return "_nothing removed_"
    head = (f"**Showing {len(tiles)} of {total} removed**, highest score first "
            f"(a near duplicate is drawn left of the kept sample it duplicates). Full list: {full_list}.")
    lines = [png_markdown(tiles_png(tiles), "removed samples"), "", head, ""]
    lines += [f"{i + 1}. {t}" for i, t in enumerate(texts)]
    return "\n".join(lines)


# A text shows its first TEXT_CHARS characters; a table row its first ROW_COLUMNS columns as name=value.
TEXT_CHARS = 200
ROW_COLUMNS = 10


def _md(text: str) -> str:
    """Text safe inside a markdown table cell: one line, pipes and backticks escaped."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("`", "'")


def sample_text(dataset: Any, position: int) -> str:
    """A table row as `name=value; ...` (its first ROW_COLUMNS columns) or a text's first TEXT_CHARS
    characters, for a gallery cell."""
    if dataset.kind == "table":
        row = dataset.table.iloc[position]
        parts = [f"{name}={'' if pd.isna(value) else value}" for name, value in list(row.items())[:ROW_COLUMNS]]
        more = " …" if len(row) > ROW_COLUMNS else ""
        return _md("; ".join(parts)) + more
    text = str(dataset.texts[position])
    return _md(text[:TEXT_CHARS]) + (" …" if len(text) > TEXT_CHARS else "")


def rows_markdown(dataset: Any, positions: Sequence[int], title: str) -> str:
    """A markdown table of samples of a table or text dataset: id, label, content."""
    lines = [f"**{title}**", "", "| id | label | sample |", "|---|---|---|"]
    lines += [f"| `{_md(dataset.ids[p])}` | {_md(dataset.class_names[dataset.labels[p]])} | "
              f"{sample_text(dataset, p)} |" for p in positions]
    return "\n".join(lines)


def removed_rows_markdown(rows: Sequence[dict[str, str]], total: int, full_list: str) -> str:
    """A step's removed-sample gallery for tables and texts: a markdown table, one removed sample a row
    (id, given -> predicted label, score, reason, the sample) and, for a duplicate, the kept sample it
    duplicates beside it."""
    if total == 0:
        return "_nothing removed_"
    head = (f"**Showing {len(rows)} of {total} removed**, highest score first (a near duplicate beside the kept "
            f"sample it duplicates). Full list: {full_list}.")
    lines = [head, "", "| id | label | score | reason | removed sample | kept sample it duplicates |",
             "|---|---|---|---|---|---|"]
    lines += [f"| `{_md(r['id'])}` | {_md(r['label'])} | {r['score']} | {_md(r['reason'])} | {r['sample']} | "
              f"{r.get('kept', '')} |" for r in rows]
    return "\n".join(lines)
