"""One column of a parsed frame file into what a Dataset holds: features typed, labels, ids, split, texts.

Rows in messages are 1-based data rows (the header is not a row), matching the default ids `row<k>`.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from prune_dagster.core.data.arrays import encode_labels
from prune_dagster.core.errors import DatasetError

NUMERIC, CATEGORICAL = "numeric", "categorical"
# A column this share of whose values parse as numbers is a numeric column with some typos or missing-value
# markers: refused with the first offender named rather than silently read as categories.
MIXED_SHARE = 0.9
_INTEGER = re.compile(r"[+-]?\d+")
_SCALAR_KINDS = ("string", "empty", "integer", "floating", "mixed-integer-float", "boolean", "decimal")


def stripped_codes(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(int64 code per row, -1 = missing or blank; the distinct stripped str values they index).

    Work on the distinct values, not the rows: a categorical column of a million rows has a handful."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    names = np.asarray(pd.Index(uniques, dtype=object).astype(str).str.strip(), dtype=object)
    # Stripping may merge values (' a' and 'a'): factorize the few names again.
    merged, distinct = pd.factorize(names)
    remap = np.where(names == "", -1, merged)
    out = np.where(codes >= 0, remap[np.maximum(codes, 0)] if len(remap) else -1, -1)
    return out.astype(np.int64), np.asarray(distinct, dtype=object)


def present_text(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(mask of rows with a value, their values as stripped str): empty or blank strings count as missing."""
    codes, names = stripped_codes(series)
    text = np.full(len(series), "", dtype=object)
    present = codes >= 0
    text[present] = names[codes[present]]
    return present, text


def check_scalars(series: pd.Series, name: str, where: str) -> None:
    """Lists, objects and arrays (JSON, Parquet) are not values a column can hold: refuse the first one."""
    if series.dtype != object or pd.api.types.infer_dtype(series, skipna=True) in _SCALAR_KINDS:
        return  # inferred in C: the per-value look below runs only for columns that may hold such values
    nested = series.map(lambda v: isinstance(v, list | dict | tuple | set | np.ndarray)).to_numpy(dtype=bool)
    if nested.any():
        row = int(np.flatnonzero(nested)[0])
        raise DatasetError(f"{where}: row {row + 1}, column {name!r} holds a nested value (a "
                           f"{type(series.iloc[row]).__name__}); expected a number or a string")


def typed_feature(series: pd.Series, name: str, where: str, na_values: tuple[str, ...]) -> tuple[pd.Series, str]:
    """A feature column as float64 (every value a number; NaN = missing) or a 'category' of stripped strings."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.astype(np.float64).reset_index(drop=True), NUMERIC
    codes, names = stripped_codes(series)
    present = codes >= 0
    # "nan" parses as NaN: a word, not a number (pandas' own NaN markers were already read as missing).
    numbers = pd.to_numeric(pd.Series(names, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    parsed = present & ~np.isnan(numbers[np.maximum(codes, 0)] if len(names) else np.zeros(len(codes)))
    n = int(present.sum())
    if n == int(parsed.sum()):  # every value a number (or none at all)
        out = np.full(len(series), np.nan)
        out[present] = numbers[codes[present]]
        return pd.Series(out, name=series.name), NUMERIC
    if parsed.sum() >= MIXED_SHARE * n:
        rows = np.flatnonzero(present & ~parsed)
        raise DatasetError(f"{where}: column {name!r} mixes numbers and text (row {rows[0] + 1}: "
                           f"{names[codes[rows[0]]]!r}; {len(rows)} of {n} values are not numbers); list "
                           f"missing-value markers in na_values (now {list(na_values)}) or fix the values")
    order = np.argsort(names.astype(str), kind="stable")  # categories sorted by name, as pd.Categorical does
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    row_codes = np.where(present, rank[np.maximum(codes, 0)], -1)
    categorical = pd.Categorical.from_codes(row_codes, categories=pd.Index(names[order].tolist()))
    return pd.Series(categorical, name=series.name), CATEGORICAL


def missing_rows_error(series: pd.Series, what: str, where: str) -> None:
    """Refuse a missing or blank value in a label, id or split column, naming the first such row."""
    present, _ = present_text(series)
    if not present.all():
        row = int(np.flatnonzero(~present)[0])
        raise DatasetError(f"{where}: row {row + 1}, column {series.name!r} has no {what}; every row needs one")


def frame_labels(series: pd.Series, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Label values -> (int64 indices, class names). Whole numbers sort as numbers, other labels as text."""
    missing_rows_error(series, "label", where)
    if pd.api.types.is_bool_dtype(series):
        series = series.astype(str)
    if pd.api.types.is_numeric_dtype(series):
        y, names = encode_labels(series.to_numpy(), f"{where}: column {series.name!r}")
    else:
        codes, distinct = stripped_codes(series)
        as_int = all(_INTEGER.fullmatch(v) and str(int(v)) == v for v in distinct)
        values = np.array([int(v) for v in distinct], dtype=np.int64) if as_int else distinct.astype(str)
        y, names = encode_labels(values[codes], f"{where}: column {series.name!r}")
    if len(names) < 2:
        raise DatasetError(f"{where}: column {series.name!r} holds a single class ({names[0]!r}); expected at least "
                           "2 classes")
    return y, names


def frame_ids(series: pd.Series | None, n: int, where: str) -> np.ndarray:
    """The id column as unique str (whole floats as integers), or `row<k>` for the 1-based data row k."""
    if series is None:
        return np.array([f"row{k}" for k in range(1, n + 1)], dtype=object)
    missing_rows_error(series, "id", where)
    whole = pd.api.types.is_float_dtype(series) and np.isfinite(series).all()
    if whole and np.array_equal(series, np.round(series)):
        series = series.astype(np.int64)
    _, ids = present_text(series)
    dup = pd.Index(ids).duplicated(keep=False)
    if dup.any():
        first = ids[dup][0]
        rows = np.flatnonzero(ids == first) + 1
        raise DatasetError(f"{where}: column {series.name!r} repeats id {first!r} (rows {rows[:5].tolist()}); ids "
                           "must be unique")
    return ids


def frame_split(series: pd.Series, where: str) -> np.ndarray:
    """A split column as "train" / "test" (any case); anything else is refused naming row and value."""
    missing_rows_error(series, "split value", where)
    codes, distinct = stripped_codes(series)
    lower = np.array([v.lower() for v in distinct], dtype=object)
    bad = ~np.isin(lower[codes], ["train", "test"])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{where}: row {row + 1}, column {series.name!r} is {distinct[codes[row]]!r}; expected "
                           "'train' or 'test'")
    return lower[codes]


def frame_texts(series: pd.Series) -> np.ndarray:
    """The text column as an object array of str, "" where missing (validation removes empty texts later)."""
    out = np.full(len(series), "", dtype=object)
    present = series.notna().to_numpy()
    out[present] = series[present].astype(str).to_numpy(dtype=object)
    return out
