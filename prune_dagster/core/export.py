"""Writing a run's outputs atomically: a crash never leaves a half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_selection(folder: Path, selection: Selection, summary: dict[str, Any]) -> dict[str, Path]:
    """kept_ids.csv, ledger.csv, synthetic.csv (if any) and summary.json into `folder`."""
    paths = {name: folder / name for name in ("kept_ids.csv", "ledger.csv", "summary.json")}
    atomic_write(paths["kept_ids.csv"], _csv(pd.DataFrame({"id": selection.kept_ids})))
    atomic_write(paths["ledger.csv"], _csv(selection.ledger[LEDGER_COLUMNS]))
    if selection.synthetic is not None:
        paths["synthetic.csv"] = folder / "synthetic.csv"
        atomic_write(paths["synthetic.csv"], _csv(selection.synthetic.frame()))
    # summary.json last: its presence marks a complete set of outputs.
    atomic_write(paths["summary.json"], json.dumps(_jsonable(summary), indent=2).encode())
    return paths
