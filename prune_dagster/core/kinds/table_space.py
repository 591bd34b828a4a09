"""A table's rows as numbers: canonical values, row hashes and the fitted feature space models read.

A table is a DataFrame in the Dataset's layout: numeric columns as floats (NaN = missing), the others
categorical (pandas 'category', or str / object). Canonical values make equality mean "the same data":
numbers as float64 with -0.0 == 0.0 and one NaN, categories as stripped strings with blank = missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from prune_dagster.core.errors import DatasetError

MAX_CATEGORIES = 64  # per column; rarer values share one "other" code so one-hot widths stay bounded
NUMERIC_CAP = 1e6  # standardised values are clipped here (inf included): float32 distances stay finite
# Two independent 64-bit row hashes make a 128-bit key: a chance collision needs ~2^64 rows.
HASH_KEYS = ("prune-dagster-k1", "prune-dagster-k2")
NUMBER_SALT = 0x9E3779B97F4A7C15


def split_columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(numeric columns, categorical columns) in frame order; booleans count as categories."""
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])
               and not pd.api.types.is_bool_dtype(frame[c])]
    return numeric, [c for c in frame.columns if c not in set(numeric)]


def canonical_numbers(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """(N, len(columns)) float64: -0.0 turned into 0.0 and every NaN into the one NaN bit pattern."""
    values = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan).reshape(len(frame), len(columns)) + 0.0
    values[np.isnan(values)] = np.nan
    return values


def canonical_category(series: pd.Series) -> pd.Categorical:
    """A column's values as a Categorical of stripped strings; blank and missing values are missing."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes, uniques = series.cat.codes.to_numpy(), pd.Index(series.cat.categories)
    else:
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        uniques = pd.Index(uniques)
    stripped = uniques.astype(str).str.strip()
    # Stripping may merge categories (' a' and 'a'): re-factorize the few category names, not the rows.
    new_codes, names = pd.factorize(np.asarray(stripped, dtype=object))
    remap = np.where(np.asarray(stripped, dtype=object) == "", -1, new_codes)
    out = np.where(codes >= 0, remap[np.maximum(codes, 0)] if len(remap) else -1, -1)
    return pd.Categorical.from_codes(out, categories=pd.Index(names, dtype=object), validate=False)


def canonical_codes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """(N, len(columns)) int64 codes of the canonical categories, -1 = missing (comparable within one frame)."""
    out = np.empty((len(frame), len(columns)), dtype=np.int64)
    for k, column in enumerate(columns):
        out[:, k] = canonical_category(frame[column]).codes
    return out


def canonical_keys(frame: pd.DataFrame) -> np.ndarray:
    """(N, 2) uint64: a 128-bit hash of each row's canonical values (column order matters, names do not)."""
    numeric, categorical = split_columns(frame)
    numbers = canonical_numbers(frame, numeric)
    categories = {c: canonical_category(frame[c]) for c in categorical}
    keys = np.empty((len(frame), 2), dtype=np.uint64)
    for k, hash_key in enumerate(HASH_KEYS):
        # pandas hashes numbers without the key: the second hash sees their bits XOR a constant (a bijection).
        bits = numbers if k == 0 else numbers.view(np.uint64) ^ np.uint64(NUMBER_SALT)
        canon = pd.DataFrame({str(n): categories[c] if c in categories else bits[:, numeric.index(c)]
                              for n, c in enumerate(frame.columns)}, index=pd.RangeIndex(len(frame)))
        keys[:, k] = pd.util.hash_pandas_object(canon, index=False, hash_key=hash_key).to_numpy()
    return keys


def same_rows(frame: pd.DataFrame, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """bool per pair: rows i[k] and j[k] hold equal canonical values (to confirm a hash match exactly)."""
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    numeric, categorical = split_columns(frame)
    a, b = canonical_numbers(frame.iloc[i], numeric), canonical_numbers(frame.iloc[j], numeric)
    equal = ((a == b) | (np.isnan(a) & np.isnan(b))).all(axis=1)
    codes = canonical_codes(frame, categorical)
    return equal & (codes[i] == codes[j]).all(axis=1)


def robust_scale(values: np.ndarray) -> tuple[float, float]:
    """(median, scale) of the finite values: IQR / 1.349 (the standard deviation for normal data), the
    standard deviation where the IQR is 0 (a mostly-constant column), 1.0 where that is 0 too."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0
    q25, median, q75 = np.percentile(finite, [25, 50, 75])
    for scale in ((q75 - q25) / 1.349, float(np.std(finite))):
        if scale > 1e-12 * max(1.0, abs(median)):
            return float(median), float(scale)
    return float(median), 1.0


@dataclass(frozen=True)
class TableSpace:
    """Numeric columns standardised robustly, categorical ones as codes; fitted on training rows, picklable.

    codes: 0 = missing or unseen, 1..k = the column's categories by training frequency (at most
    MAX_CATEGORIES), k + 1 = "other" when the column had more (every non-missing value outside the k,
    unseen ones included). numeric(): one indicator column per numeric column that had NaN at fit.
    """

    numeric_columns: tuple[str, ...]
    medians: tuple[float, ...]
    scales: tuple[float, ...]
    indicator_columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]
    has_other: tuple[bool, ...]

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> TableSpace:
        numeric, categorical = split_columns(frame)
        numbers = canonical_numbers(frame, numeric)
        stats = [robust_scale(numbers[:, k]) for k in range(len(numeric))]
        indicators = tuple(c for k, c in enumerate(numeric) if np.isnan(numbers[:, k]).any())
        cats, other = [], []
        for column in categorical:
            counts = pd.Series(canonical_category(frame[column])).value_counts(dropna=True)
            counts = counts[counts > 0]
            ranked = sorted(zip(counts.to_numpy().tolist(), map(str, counts.index), strict=True),
                            key=lambda kv: (-kv[0], kv[1]))  # ties by name: the fit is deterministic
            cats.append(tuple(name for _, name in ranked[:MAX_CATEGORIES]))
            other.append(len(ranked) > MAX_CATEGORIES)
        return cls(tuple(numeric), tuple(m for m, _ in stats), tuple(s for _, s in stats), indicators,
                   tuple(categorical), tuple(cats), tuple(other))

    @property
    def n_numeric(self) -> int:
        """Width of numeric(): the standardised columns and the missing indicators."""
        return len(self.numeric_columns) + len(self.indicator_columns)

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Number of distinct codes per categorical column (missing / unseen, categories, other)."""
        return tuple(1 + len(c) + int(o) for c, o in zip(self.categories, self.has_other, strict=True))

    def _columns(self, frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DatasetError(f"table: column(s) {missing} the feature space was fitted on are missing; found "
                               f"{list(frame.columns)}")
        return frame

    def numeric(self, frame: pd.DataFrame) -> np.ndarray:
        """(N, n_numeric) float32: (x - median) / scale, NaN -> 0, clipped to ±NUMERIC_CAP; then indicators."""
        frame = self._columns(frame, self.numeric_columns)
        numbers = canonical_numbers(frame, list(self.numeric_columns))
        z = (numbers - np.asarray(self.medians)) / np.asarray(self.scales)
        z = np.clip(np.nan_to_num(z, nan=0.0, posinf=NUMERIC_CAP, neginf=-NUMERIC_CAP), -NUMERIC_CAP, NUMERIC_CAP)
        flags = canonical_numbers(frame, list(self.indicator_columns))
        return np.hstack([z, np.isnan(flags)]).astype(np.float32)

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        """(N, n_categorical) int64 codes (see the class docstring)."""
        frame = self._columns(frame, self.categorical_columns)
        out = np.zeros((len(frame), len(self.categorical_columns)), dtype=np.int64)
        for k, column in enumerate(self.categorical_columns):
            values = canonical_category(frame[column])
            code = pd.Categorical(np.asarray(values, dtype=object), categories=list(self.categories[k])).codes + 1
            if self.has_other[k]:
                code = np.where((code == 0) & ~values.isna(), len(self.categories[k]) + 1, code)
            out[:, k] = code
        return out

    def raw_features(self, frame: pd.DataFrame) -> np.ndarray:
        """(N, n_numeric + sum(cardinalities)) float32: numeric() then a one-hot block per categorical column."""
        blocks = [self.numeric(frame)]
        codes = self.codes(frame)
        for k, width in enumerate(self.cardinalities):
            onehot = np.zeros((len(frame), width), dtype=np.float32)
            onehot[np.arange(len(frame)), codes[:, k]] = 1.0
            blocks.append(onehot)
        return np.hstack(blocks)
