"""CSV, Parquet and JSONL files into a Dataset: a table (numbers and categories) or texts.

Only ever reads the file. Every problem with the file as a whole raises one DatasetError line naming the
file and, where it applies, the line or row and the column (rows are 1-based data rows: the header is not
a row). Before parsing, CSV and JSONL files are scanned in binary chunks (`frame_scan.prescan`): bytes
that are not UTF-8 and lines longer than `max_text_bytes` are refused without reading such a line whole.
"""

from __future__ import annotations

import itertools
import json
import re
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.frame_columns import (
    NUMERIC,
    check_scalars,
    frame_ids,
    frame_labels,
    frame_split,
    frame_texts,
    typed_feature,
)
from prune_dagster.core.data.frame_scan import check_value_lengths, csv_header, first_wide_line, prescan
from prune_dagster.core.errors import DatasetError

FRAME_SUFFIXES = (".csv", ".parquet", ".jsonl")
_FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl"}
_WIDTH_ERROR = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


class FrameOptions(BaseModel):
    """How raw_dataset reads a CSV / Parquet / JSONL file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["auto", "table", "text"] = Field(
        default="auto", description="auto: text when the text column is present, else table")
    label_column: str = Field(default="label", min_length=1, description="the column of class labels")
    id_column: str = Field(default="", description="the column of unique ids; empty: 'id' when present, "
                                                   "else row<k> for the k-th data row")
    split_column: str = Field(default="", description="optional column of 'train' / 'test' (any case)")
    text_column: str = Field(default="text", min_length=1, description="the column of texts (text kind)")
    na_values: tuple[str, ...] = Field(default=("?",), description="missing-value markers on top of pandas' "
                                                                   "defaults ('', 'NA', 'NaN', 'null', ...)")
    max_text_bytes: int = Field(default=10_000_000, ge=1, description="a longer line or value is refused")


def frame_format(path: Path) -> str:
    """'csv', 'parquet' or 'jsonl' from the suffix; anything else is refused."""
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DatasetError(f"{path}: unknown suffix {path.suffix!r}; expected one of {list(FRAME_SUFFIXES)}")
    return fmt


def load_frame_file(path: str | Path, options: FrameOptions | None = None) -> Dataset:
    """A Dataset of kind "table" or "text" from one CSV, Parquet or JSONL file (see FrameOptions)."""
    options = options or FrameOptions()
    path = Path(path)
    fmt = frame_format(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    if fmt != "parquet":
        prescan(path, options.max_text_bytes, fmt)
    raw = {"csv": read_csv, "parquet": read_parquet, "jsonl": read_jsonl}[fmt](path, options)
    raw.columns = [str(c) for c in raw.columns]
    if raw.columns.duplicated().any():
        raise DatasetError(f"{path}: column name(s) {sorted(set(raw.columns[raw.columns.duplicated()]))} repeat; "
                           "names must be unique")
    if fmt != "csv":
        raw = with_na_values(raw, options.na_values)
    if len(raw) == 0:
        raise DatasetError(f"{path}: no data rows (columns {list(raw.columns)}); expected a header and at least "
                           "one row per class")
    check_value_lengths(raw, str(path), options.max_text_bytes)
    return frame_dataset(raw.reset_index(drop=True), str(path), fmt, options)


def with_na_values(raw: pd.DataFrame, na_values: tuple[str, ...]) -> pd.DataFrame:
    """String values equal to a missing-value marker made missing, as read_csv does for CSV files."""
    for column in raw.columns:
        values = raw[column]
        if na_values and (values.dtype == object or isinstance(values.dtype, pd.StringDtype)):
            raw[column] = values.where(~values.isin(na_values))
    return raw


def read_csv(path: Path, options: FrameOptions) -> pd.DataFrame:
    """The C engine; label, id, split and text columns kept as written (str), the rest inferred."""
    as_text = {options.label_column, options.id_column or "id", options.split_column, options.text_column} - {""}
    header = csv_header(path)
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DatasetError(f"{path}: the header repeats column name(s) {repeated}; names must be unique")
    try:
        with warnings.catch_warnings():
            # index_col=False: rows wider than the header are not silently read as an index; pandas then only
            # warns that it drops their extra fields (a ParserWarning), which is refused here.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, engine="c", encoding="utf-8", dtype=dict.fromkeys(as_text, str), index_col=False,
                               na_values=list(options.na_values), keep_default_na=True, low_memory=False)
    except pd.errors.ParserWarning as exc:
        line, fields = first_wide_line(path, len(header))
        if not line:
            raise DatasetError(f"{path}: not a readable CSV file ({exc})") from exc
        raise DatasetError(f"{path}: line {line} has {fields} fields; expected {len(header)}, one per header "
                           "column (a comma inside a value needs quotes)") from exc
    except pd.errors.EmptyDataError as exc:
        raise DatasetError(f"{path}: the file is empty; expected a header row and data rows") from exc
    except pd.errors.ParserError as exc:
        found = _WIDTH_ERROR.search(str(exc))
        if found:
            want, line, saw = found.groups()
            raise DatasetError(f"{path}: line {line} has {saw} fields; expected {want}, one per header column "
                               "(a comma inside a value needs quotes)") from exc
        raise DatasetError(f"{path}: not a readable CSV file ({str(exc).strip()})") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable CSV file ({exc})") from exc


def read_parquet(path: Path, options: FrameOptions) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types (ArrowInvalid, OSError, ...) for bad files
        raise DatasetError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from exc


def read_jsonl(path: Path, options: FrameOptions) -> pd.DataFrame:
    """One JSON object per line, read line by line with a length limit; blank lines are skipped."""
    limit, records = options.max_text_bytes, []
    with open(path, "rb") as fh:
        for line_no in itertools.count(1):
            line = fh.readline(limit + 1)
            if not line:
                break
            if len(line) > limit and not line.endswith(b"\n"):
                raise DatasetError(f"{path}: line {line_no} is longer than max_text_bytes={limit} bytes")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}: line {line_no} is not valid JSON ({exc.msg} at character "
                                   f"{exc.pos + 1})") from exc
            except ValueError as exc:  # e.g. a number too large for Python's int conversion limit
                raise DatasetError(f"{path}: line {line_no} is not valid JSON ({exc})") from exc
            if not isinstance(record, dict):
                raise DatasetError(f"{path}: line {line_no} holds a JSON {type(record).__name__}; expected one "
                                   "object per line")
            records.append(record)
    if not records:
        raise DatasetError(f"{path}: the file is empty; expected one JSON object per line")
    return pd.DataFrame.from_records(records)


def column_or_none(raw: pd.DataFrame, name: str, setting: str, where: str) -> pd.Series | None:
    """The named column; a name set explicitly but absent is refused, listing the columns found."""
    if not name:
        return None
    if name not in raw.columns:
        raise DatasetError(f"{where}: no column {name!r} ({setting}); found columns {list(raw.columns)}")
    return raw[name]


def frame_dataset(raw: pd.DataFrame, where: str, fmt: str, options: FrameOptions) -> Dataset:
    """The parsed rows as a Dataset: labels, ids, split, then the table's features or the texts."""
    for column in raw.columns:
        check_scalars(raw[column], column, where)
    label = column_or_none(raw, options.label_column, "label_column", where)
    id_name = options.id_column or ("id" if "id" in raw.columns else "")
    id_series = column_or_none(raw, id_name, "id_column", where)
    split_series = column_or_none(raw, options.split_column, "split_column", where)
    kind = options.kind
    if kind == "auto":
        kind = "text" if options.text_column in raw.columns else "table"
    y, names = frame_labels(label, where)  # type: ignore[arg-type]  # label_column is never empty
    ids = frame_ids(id_series, len(raw), where)
    split = frame_split(split_series, where) if split_series is not None else np.array([], dtype=object)
    reserved = {options.label_column, id_name, options.split_column} - {""}
    info = {"format": fmt, "kind": kind, "label_column": options.label_column, "id_column": id_name,
            "numeric_columns": [], "categorical_columns": [], "ignored_columns": []}
    common = {"ids": ids, "labels": y, "class_names": names, "source": where, "split": split}
    if kind == "text":
        texts = column_or_none(raw, options.text_column, "text_column", where)
        info["ignored_columns"] = [c for c in raw.columns if c not in reserved | {options.text_column}]
        return Dataset(texts=frame_texts(texts), load_info=info, **common)  # type: ignore[arg-type]
    table = feature_table(raw, [c for c in raw.columns if c not in reserved], where, options, info)
    return Dataset(table=table, load_info=info, **common)


def feature_table(raw: pd.DataFrame, columns: list[str], where: str, options: FrameOptions,
                  info: dict) -> pd.DataFrame:
    """Each feature column typed (numbers or categories); their names recorded in `info` by type."""
    if not columns:
        raise DatasetError(f"{where}: no feature columns; found only {list(raw.columns)} (label, id and split "
                           "columns are not features)")
    typed = {}
    for name in columns:
        typed[name], kind = typed_feature(raw[name], name, where, options.na_values)
        info["numeric_columns" if kind == NUMERIC else "categorical_columns"].append(name)
    return pd.DataFrame(typed)
