"""A small grid of removed samples as a base64 PNG, for Dagster's Markdown metadata."""

from __future__ import annotations

import base64
import io

import numpy as np


def image_grid_png(images: np.ndarray, columns: int = 8, cell: int = 32) -> bytes:
    """(N, H, W, C) in [0, 1] → PNG bytes of a grid; NaN pixels are drawn red-free black."""
    from PIL import Image

    n = len(images)
    rows = max(1, -(-n // columns))
    c = images.shape[-1] if n else 1
    canvas = Image.new("RGB", (columns * (cell + 2), rows * (cell + 2)), (255, 255, 255))
    for i, img in enumerate(images):
        arr = np.nan_to_num(np.clip(img, 0, 1)) * 255
        arr = arr[..., 0] if c == 1 else arr[..., :3]
        tile = Image.fromarray(arr.astype(np.uint8)).convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
        canvas.paste(tile, ((i % columns) * (cell + 2) + 1, (i // columns) * (cell + 2) + 1))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def gallery_markdown(images: np.ndarray, captions: list[str], limit: int = 16) -> str:
    """Markdown with an inline image grid of up to `limit` samples and their captions."""
    if len(images) == 0:
        return "_nothing removed_"
    images, captions = images[:limit], captions[:limit]
    data = base64.b64encode(image_grid_png(images)).decode()
    lines = [f"![removed samples](data:image/png;base64,{data})", ""]
    lines += [f"{i + 1}. {c}" for i, c in enumerate(captions)]
    return "\n".join(lines)
