"""The feature space that similarity and outlier steps share: flattened pixels → PCA.

PCA is fitted on a bounded seeded sample; the projection runs in row blocks through a Mapper
(prune_dagster/core/infra/parallel.py), each block flattened on its own, so no flattened copy of the whole
set is made. A block's rows project exactly as they would in one call.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from prune_dagster.core.infra.parallel import BLOCK_ROWS, Mapper, serial_map, split_rows

# PCA is fitted on at most this many samples: enough for a stable basis, bounded cost at scale.
FIT_SAMPLE = 20_000


def flatten(images: np.ndarray, feature_mask: np.ndarray | None = None) -> np.ndarray:
    x = images.reshape(len(images), -1)
    if feature_mask is not None:
        x = x[:, np.broadcast_to(feature_mask[..., None], images.shape[1:]).reshape(-1)]
    return np.ascontiguousarray(x, dtype=np.float32)


def _project(block: np.ndarray, *, pca: PCA, feature_mask: np.ndarray | None) -> np.ndarray:
    return pca.transform(flatten(block, feature_mask)).astype(np.float32)


def pca_embed(images: np.ndarray, n_components: int = 32, seed: int = 0,
              feature_mask: np.ndarray | None = None, mapper: Mapper = serial_map,
              block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """Centered PCA projection (not whitened, so distances stay in pixel units), fitted on at most
    FIT_SAMPLE rows and applied in blocks of `block_rows` through `mapper`."""
    return project(images, fit_pca(images, n_components, seed, feature_mask), feature_mask, mapper, block_rows)


def fit_pca(images: np.ndarray, n_components: int = 32, seed: int = 0,
            feature_mask: np.ndarray | None = None) -> PCA:
    """The basis `pca_embed` projects on: fitted on at most FIT_SAMPLE seeded rows, so later samples
    can be projected onto the same basis."""
    n = len(images)
    rng = np.random.default_rng(seed)
    fit = flatten(images if n <= FIT_SAMPLE else images[rng.choice(n, FIT_SAMPLE, replace=False)], feature_mask)
    k = max(1, min(n_components, fit.shape[1], n))
    return PCA(n_components=k, random_state=seed, svd_solver="auto").fit(fit)


def project(images: np.ndarray, pca: PCA, feature_mask: np.ndarray | None = None, mapper: Mapper = serial_map,
            block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """Rows of `images` on a fitted basis, in blocks through `mapper`."""
    blocks = mapper(_project, split_rows(images, block_rows), {"pca": pca, "feature_mask": feature_mask})
    return np.concatenate(blocks) if blocks else np.empty((0, pca.n_components_), np.float32)
