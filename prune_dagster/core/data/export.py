"""Writing a run's outputs atomically: a crash never leaves a half-written file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.export_frames import write_frame_subset
from prune_dagster.core.infra.parallel import BLOCK_ROWS
from prune_dagster.core.ledger import LEDGER_COLUMNS, Selection


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_ledger(folder: Path, selection: Selection, kind: str = "image") -> dict[str, Path]:
    """kept_ids.csv, ledger.csv (its rows name the dataset's `kind`) and synthetic.csv (if any) into
    `folder` (the score step writes them)."""
    paths = {name: folder / name for name in ("kept_ids.csv", "ledger.csv")}
    atomic_write(paths["kept_ids.csv"], _csv(pd.DataFrame({"id": selection.kept_ids})))
    atomic_write(paths["ledger.csv"], _csv(selection.ledger[LEDGER_COLUMNS].assign(kind=kind)))
    if selection.synthetic is not None:
        paths["synthetic.csv"] = folder / "synthetic.csv"
        atomic_write(paths["synthetic.csv"], _csv(selection.synthetic.frame()))
    return paths


def write_summary(folder: Path, summary: dict[str, Any]) -> Path:
    """summary.json into `folder`: written last (by model_evaluation), its presence marks a complete run."""
    path = folder / "summary.json"
    atomic_write(path, json.dumps(jsonable(summary), indent=2).encode())
    return path


def export_dataset(dataset: Dataset, selection: Selection, dest: Path) -> Path:
    """The pruned dataset in the input's own format, written to a temporary folder and renamed.

    An image-folder or text-folder source → `dest/<class>/...` copies of the kept files (the source is
    only read); an .npy folder → the same files for the kept rows (images written through a memory map);
    a .csv / .parquet / .jsonl file → the kept rows in the same format (core/data/export_frames.py); any
    other source → `dest/pruned.npz` (images, labels, ids). Synthetic samples go to
    `dest/synthetic.npz` (or `synthetic.<ext>`) so they are never mistaken for originals.
    """
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        pos = np.sort(dataset.index_of(selection.kept_ids))
        root = Path(dataset.source)
        if dataset.load_info.get("format") == "npy":  # an .npy folder → the same, written block by block
            _write_npy_folder(tmp, dataset, pos)
        elif dataset.load_info.get("format") in ("csv", "parquet", "jsonl"):
            write_frame_subset(dataset, pos, selection.synthetic, tmp)
        elif root.is_dir():
            for sid in dataset.ids[pos]:
                target = tmp / sid
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / sid, target)
        else:
            np.savez_compressed(tmp / "pruned.npz", images=dataset.images[pos],
                                labels=_label_values(dataset, dataset.labels[pos]),
                                ids=dataset.ids[pos].astype(str))
        if selection.synthetic is not None and len(selection.synthetic.ids) and dataset.kind == "image":
            s = selection.synthetic
            np.savez_compressed(tmp / "synthetic.npz", images=s.images, labels=_label_values(dataset, s.labels),
                                ids=s.ids.astype(str))
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{os.getpid()}"
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _label_values(dataset: Dataset, labels: np.ndarray) -> np.ndarray:
    """Labels as the source named them: integers when every class name is one, else strings."""
    names = np.asarray(dataset.class_names)
    values = names[labels]
    try:
        return values.astype(np.int64)
    except ValueError:
        return values.astype(str)


def write_png_folder(images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], root: Path,
                     names: list[str] | None = None) -> list[str]:
    """Write images as `root/<class>/<name>.png` (8-bit); returns the ids (relative paths) written."""
    from PIL import Image

    ids = []
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        rel = f"{class_names[y]}/{names[i] if names else f'{i:06d}'}.png"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        arr = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path)
        ids.append(rel)
    return ids


def _write_npy_folder(folder: Path, dataset: Dataset, pos: np.ndarray, block: int = BLOCK_ROWS) -> None:
    images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=dataset.images.dtype,
                                       shape=(len(pos), *dataset.images.shape[1:]))
    for start in range(0, len(pos), block):
        images[start:start + block] = dataset.images[pos[start:start + block]]
    images.flush()
    del images
    np.save(folder / "labels.npy", dataset.labels[pos])
    np.save(folder / "ids.npy", dataset.ids[pos].astype(str))
    (folder / "class_names.json").write_text(json.dumps(list(dataset.class_names)))
