"""The pruned dataset of a table or text file, in the file's own format: the kept rows as written.

The source is read again as plain text (every value a string, nothing re-typed), so the kept rows are
the user's rows unchanged, every column included, in file order: a CSV stays a CSV (`pruned.csv`), a
Parquet file a Parquet file, JSONL keeps each kept line byte for byte. The loader keeps the file's row
order, so dataset position p is data row p of the file. Synthetic rows (SMOTE-NC on a table) go to
`synthetic.<ext>` with the table's columns and the label column, never among the originals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.ledger import Synthetic


def write_frame_subset(dataset: Dataset, positions: np.ndarray, synthetic: Synthetic | None, folder: Path) -> None:
    """`folder/pruned.<ext>`: the source rows at `positions` (sorted), and `folder/synthetic.<ext>`."""
    source, fmt = Path(dataset.source), dataset.load_info.get("format", "csv")
    positions = np.sort(np.asarray(positions))
    if fmt == "jsonl":
        lines = [line for line in source.read_bytes().splitlines(keepends=True) if line.strip()]
        (folder / "pruned.jsonl").write_bytes(b"".join(lines[p] for p in positions))
    elif fmt == "parquet":
        pd.read_parquet(source).iloc[positions].to_parquet(folder / "pruned.parquet", index=False)
    else:
        raw = pd.read_csv(source, dtype=str, keep_default_na=False, index_col=False)
        raw.iloc[positions].to_csv(folder / "pruned.csv", index=False)
    if synthetic is not None and len(synthetic.ids):
        _write_synthetic(dataset, synthetic, folder, fmt)


def _write_synthetic(dataset: Dataset, synthetic: Synthetic, folder: Path, fmt: str) -> None:
    content = synthetic.content()
    rows = content.copy() if isinstance(content, pd.DataFrame) else pd.DataFrame(
        {dataset.load_info.get("text_column", "text"): content})
    rows.insert(0, "id", synthetic.ids)
    rows[dataset.load_info.get("label_column", "label")] = np.asarray(dataset.class_names, dtype=object)[
        synthetic.labels]
    if fmt == "jsonl":
        rows.to_json(folder / "synthetic.jsonl", orient="records", lines=True, force_ascii=False)
    elif fmt == "parquet":
        rows.to_parquet(folder / "synthetic.parquet", index=False)
    else:
        rows.to_csv(folder / "synthetic.csv", index=False)
