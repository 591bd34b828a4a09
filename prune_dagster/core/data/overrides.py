"""Human overrides: an `overrides.csv` (id, action = keep | drop) that pins samples.

A pinned keep is never removed by any step; a pinned drop is always removed (reason `override`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prune_dagster.core.errors import DatasetError

ACTIONS = ("keep", "drop")


def load_overrides(path: str | Path, train_ids: np.ndarray, test_ids: np.ndarray) -> tuple[set[str], set[str]]:
    """(pinned keep ids, pinned drop ids); every problem names the file and the rows at fault."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read overrides ({exc})") from exc
    if missing := {"id", "action"} - set(frame.columns):
        raise DatasetError(f"{path}: missing column(s) {sorted(missing)}; expected columns id, action")
    frame["action"] = frame["action"].str.strip().str.lower()
    if (bad := ~frame["action"].isin(ACTIONS)).any():
        row = frame[bad].iloc[0]
        raise DatasetError(f"{path}: action {row['action']!r} for id {row['id']!r}; expected one of {ACTIONS}")
    if (in_test := frame["id"].isin(set(test_ids))).any():
        raise DatasetError(f"{path}: id {frame['id'][in_test].iloc[0]!r} is in the held-out test split, "
                           "which is never pruned; overrides apply to training samples only")
    if (unknown := ~frame["id"].isin(set(train_ids))).any():
        names = frame["id"][unknown].head(3).tolist()
        raise DatasetError(f"{path}: {int(unknown.sum())} id(s) not in the dataset, e.g. {names}")
    both = set(frame.loc[frame.action == "keep", "id"]) & set(frame.loc[frame.action == "drop", "id"])
    if both:
        raise DatasetError(f"{path}: id {sorted(both)[0]!r} is pinned both keep and drop")
    return set(frame.loc[frame.action == "keep", "id"]), set(frame.loc[frame.action == "drop", "id"])
