"""The feature space that similarity and outlier steps share: flattened pixels → PCA."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

# PCA is fitted on at most this many samples: enough for a stable basis, bounded cost at scale.
FIT_SAMPLE = 20_000


def flatten(images: np.ndarray, feature_mask: np.ndarray | None = None) -> np.ndarray:
    x = images.reshape(len(images), -1)
    if feature_mask is not None:
        x = x[:, np.broadcast_to(feature_mask[..., None], images.shape[1:]).reshape(-1)]
    return np.ascontiguousarray(x, dtype=np.float32)


def pca_embed(images: np.ndarray, n_components: int = 32, seed: int = 0,
              feature_mask: np.ndarray | None = None) -> np.ndarray:
    """Centered PCA projection (not whitened, so distances stay in pixel units)."""
    x = flatten(images, feature_mask)
    k = max(1, min(n_components, x.shape[1], len(x)))
    rng = np.random.default_rng(seed)
    fit = x if len(x) <= FIT_SAMPLE else x[rng.choice(len(x), FIT_SAMPLE, replace=False)]
    pca = PCA(n_components=k, random_state=seed, svd_solver="auto").fit(fit)
    return pca.transform(x).astype(np.float32)
