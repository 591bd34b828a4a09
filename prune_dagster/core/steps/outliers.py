"""Outliers: IsolationForest or LocalOutlierFactor on the embedding, with a robust automatic threshold."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.ledger import StepResult, removed_frame

METHODS = ("isolation_forest", "lof", "none")


def anomaly_scores(embedding: np.ndarray, method: str, seed: int = 0, n_neighbors: int = 20) -> np.ndarray:
    """Higher = more anomalous."""
    if method == "isolation_forest":
        forest = IsolationForest(n_estimators=200, random_state=seed).fit(embedding)
        return -forest.score_samples(embedding)
    if method == "lof":
        lof = LocalOutlierFactor(n_neighbors=min(n_neighbors, len(embedding) - 1)).fit(embedding)
        return -lof.negative_outlier_factor_
    raise ConfigError(f"method={method!r}; expected one of {METHODS}")


def find_outliers(ids: np.ndarray, embedding: np.ndarray, method: str = "isolation_forest",
                  contamination: float = 0.0, z_threshold: float = 4.0, seed: int = 0) -> StepResult:
    """Flag the samples whose anomaly score is extreme.

    With `contamination` = 0 (default) the threshold is automatic: median + z × 1.4826 × MAD of the
    scores, so clean data loses (almost) nothing; a contamination in (0, 0.5) removes that share.
    """
    if method not in METHODS:
        raise ConfigError(f"method={method!r}; expected one of {METHODS}")
    if not 0.0 <= contamination < 0.5:
        raise ConfigError(f"contamination={contamination}; expected 0 (automatic) or a share in (0, 0.5)")
    if method == "none" or len(ids) < 3:
        return StepResult(removed=removed_frame(), metadata={"threshold": None})
    scores = anomaly_scores(embedding, method, seed)
    if contamination > 0:
        threshold = float(np.quantile(scores, 1.0 - contamination))
        out = scores > threshold
    else:
        med = float(np.median(scores))
        mad = float(np.median(np.abs(scores - med))) * 1.4826 or 1e-12
        threshold = med + z_threshold * mad
        out = scores > threshold
    robust_z = (scores - np.median(scores)) / (np.median(np.abs(scores - np.median(scores))) * 1.4826 or 1e-12)
    removed = removed_frame(np.asarray(ids, dtype=object)[out], f"outlier_{method}", robust_z[out])
    return StepResult(removed=removed, metadata={"threshold": round(threshold, 5), "method": method})
