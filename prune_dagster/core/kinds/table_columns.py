"""Table columns and rows that change the table: which columns to keep, and synthetic minority rows (SMOTE)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE, SMOTEN, SMOTENC
from sklearn.feature_selection import mutual_info_classif

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.kinds.table_space import canonical_numbers, split_columns

SELECT_METHODS = ("none", "variance", "correlation", "mutual_info")
MI_MAX_ROWS = 50_000  # mutual information's k-NN estimate is O(n log n) per column: a seeded sample is enough


def column_codes(series: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """(int64 codes with -1 = missing, the values they index) of a categorical or object column."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.cat.codes.to_numpy(dtype=np.int64), pd.Index(series.cat.categories)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return codes.astype(np.int64), pd.Index(uniques)


def imputed_numbers(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """float64 values with NaN and inf replaced by the column's median of finite values (0 if none)."""
    numbers = canonical_numbers(frame, columns)
    for k in range(numbers.shape[1]):
        bad = ~np.isfinite(numbers[:, k])
        if bad.any():
            finite = numbers[~bad, k]
            numbers[bad, k] = float(np.median(finite)) if finite.size else 0.0
    return numbers


def select_columns(frame: pd.DataFrame, labels: np.ndarray, method: str = "variance", threshold: float = 0.95,
                   keep_fraction: float = 0.75, seed: int = 0) -> tuple[tuple[str, ...], dict[str, Any]]:
    """(kept column names in frame order, meta). variance: drop columns with a single value (missing counts
    as a value); correlation: also drop the later of each numeric pair with |Pearson r| > threshold;
    mutual_info: after the variance filter, keep the top keep_fraction by mutual information with the
    label; none: keep all. meta: method, dropped ({column: reason}), and mutual_info scores."""
    if method not in SELECT_METHODS:
        raise ConfigError(f"column selection method={method!r}; expected one of {list(SELECT_METHODS)}")
    if not 0.0 < threshold <= 1.0 or not 0.0 < keep_fraction <= 1.0:
        raise ConfigError(f"column selection threshold={threshold}, keep_fraction={keep_fraction}; expected both "
                          "in (0, 1]")
    dropped: dict[str, str] = {}
    meta: dict[str, Any] = {"method": method, "dropped": dropped}
    kept = list(frame.columns)
    if method != "none":
        for column in kept:
            if frame[column].nunique(dropna=False) <= 1:
                dropped[column] = "a single value"
        kept = [c for c in kept if c not in dropped]
    if method == "correlation":
        kept = drop_correlated(frame, kept, threshold, dropped)
    elif method == "mutual_info" and kept:
        scores = mutual_information(frame[kept], np.asarray(labels), seed)
        meta["mutual_info"] = dict(zip(kept, scores.round(6).tolist(), strict=True))
        top = set(np.argsort(-scores, kind="stable")[:max(1, math.ceil(keep_fraction * len(kept)))].tolist())
        dropped.update({c: "low mutual information" for k, c in enumerate(kept) if k not in top})
        kept = [c for k, c in enumerate(kept) if k in top]
    if not kept:
        raise ConfigError(f"column selection method={method!r} leaves no column: every one of {list(frame.columns)} "
                          "holds a single value; use method='none' or fix the table")
    return tuple(kept), meta


def drop_correlated(frame: pd.DataFrame, columns: list[str], threshold: float, dropped: dict[str, str]) -> list[str]:
    """`columns` without the later numeric column of each pair correlated beyond `threshold` (pairwise rows)."""
    numeric, _ = split_columns(frame[columns])
    corr = frame[numeric].corr().abs().fillna(0.0).to_numpy() if numeric else np.zeros((0, 0))
    kept_numeric: list[int] = []
    for k, column in enumerate(numeric):
        partner = next((m for m in kept_numeric if corr[k, m] > threshold), None)
        if partner is None:
            kept_numeric.append(k)
        else:
            dropped[column] = f"|r| = {corr[k, partner]:.3f} with {numeric[partner]!r}"
    return [c for c in columns if c not in dropped]


def mutual_information(frame: pd.DataFrame, labels: np.ndarray, seed: int) -> np.ndarray:
    """Mutual information of each column with the label on at most MI_MAX_ROWS seeded rows."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(frame), MI_MAX_ROWS, replace=False)) if len(frame) > MI_MAX_ROWS else None
    part = frame.iloc[rows] if rows is not None else frame
    y = labels[rows] if rows is not None else labels
    numeric, categorical = split_columns(part)
    blocks = [imputed_numbers(part, numeric)] + [column_codes(part[c])[0][:, None] for c in categorical]
    x = np.hstack(blocks).astype(np.float64)
    discrete = np.array([False] * len(numeric) + [True] * len(categorical))
    scores = mutual_info_classif(x, y, discrete_features=discrete, random_state=seed)
    position = {c: k for k, c in enumerate(numeric + categorical)}
    return np.array([scores[position[c]] for c in frame.columns])


def smote_rows(frame: pd.DataFrame, labels: np.ndarray, strategy: dict[int, int], k_neighbors: int,
               seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Only the new synthetic rows (the frame's columns and dtypes) and their labels.

    SMOTE when every column is numeric, SMOTENC when some are categorical, SMOTEN when all are.
    `strategy` is imblearn's sampling_strategy ({class: target count}); a class already at its target,
    or with fewer than 2 rows, gets none. k_neighbors is capped at the smallest such class's size - 1.
    Numeric NaN and inf are imputed with the column median first; a missing category is its own value.
    """
    labels = np.asarray(labels)
    counts = Counter(labels.tolist())
    targets = {int(c): int(t) for c, t in strategy.items() if t > counts.get(int(c), 0) >= 2}
    if not targets:
        return frame.iloc[:0].reset_index(drop=True), labels[:0]
    k = max(1, min(k_neighbors, min(counts[c] for c in targets) - 1))
    numeric, categorical = split_columns(frame)
    coded = [column_codes(frame[c]) for c in categorical]
    x = np.hstack([imputed_numbers(frame, numeric)] + [(codes + 1)[:, None] for codes, _ in coded])
    cats = list(range(len(numeric), len(numeric) + len(categorical)))
    common = {"sampling_strategy": targets, "random_state": seed, "k_neighbors": k}
    if not categorical:
        sampler = SMOTE(**common)
    elif not numeric:
        sampler = SMOTEN(**common)
    else:
        sampler = SMOTENC(categorical_features=cats, **common)
    x_all, y_all = sampler.fit_resample(x, labels)
    new, y_new = x_all[len(frame):], np.asarray(y_all[len(frame):], dtype=labels.dtype)
    out = {}
    for column in frame.columns:
        if column in numeric:
            out[column] = pd.Series(new[:, numeric.index(column)]).astype(frame[column].dtype)
        else:
            c = categorical.index(column)
            out[column] = decoded(frame[column], coded[c][1], new[:, len(numeric) + c])
    return pd.DataFrame(out, columns=frame.columns), y_new


def decoded(original: pd.Series, values: pd.Index, codes: np.ndarray) -> pd.Series:
    """Codes 0 = missing, 1.. back to the original column's values and dtype."""
    index = np.rint(codes).astype(np.int64) - 1
    if isinstance(original.dtype, pd.CategoricalDtype):
        return pd.Series(pd.Categorical.from_codes(index, dtype=original.dtype))
    out = np.full(len(index), None, dtype=object)
    out[index >= 0] = np.asarray(values, dtype=object)[index[index >= 0]]
    return pd.Series(out, dtype=original.dtype if original.dtype != object else object)
