"""The raw-feature space the outlier step compares samples in when it does not use the learned
representation: a low-dimensional projection of each kind's plain numbers.

- images: flattened pixels through PCA (`pca.py`: fitted on a bounded seeded sample, projected in blocks);
- tables: standardised numeric columns plus one-hot categories (`kinds/table.TableSpace`), through PCA;
- texts: TF-IDF of the tokens (`kinds/text.tfidf_features`), through truncated SVD (LSA).

A fitted space is kept by the incremental index, so new samples are projected exactly as the old ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.decomposition import PCA, TruncatedSVD

from prune_dagster.core.embedding.pca import FIT_SAMPLE, fit_pca, project
from prune_dagster.core.infra.parallel import Mapper, serial_map


@dataclass
class RawSpace:
    """A fitted projection of one kind's raw features (see the module docstring)."""

    kind: str
    basis: Any  # sklearn PCA / TruncatedSVD
    space: Any = None  # tables: the TableSpace; texts: the training texts the TF-IDF vocabulary is fitted on

    @classmethod
    def fit(cls, kind: str, content: Any, n_components: int, seed: int) -> RawSpace:
        if kind == "image":
            return cls(kind, fit_pca(content, n_components, seed))
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(len(content), FIT_SAMPLE, replace=False)) if len(content) > FIT_SAMPLE else None
        if kind == "table":
            from prune_dagster.core.kinds.table import TableSpace

            space = TableSpace.fit(content)
            x = space.raw_features(content if sample is None else content.iloc[sample])
            k = max(1, min(n_components, x.shape[1], len(x)))
            return cls(kind, PCA(n_components=k, random_state=seed).fit(x), space)
        from prune_dagster.core.kinds.text import tfidf_features

        fit_texts = np.asarray(content if sample is None else content[sample], dtype=object)
        x = tfidf_features(fit_texts, fit_texts)
        k = max(1, min(n_components, x.shape[1] - 1, len(fit_texts) - 1))
        return cls(kind, TruncatedSVD(n_components=k, random_state=seed).fit(x), fit_texts)

    def transform(self, content: Any, mapper: Mapper = serial_map) -> np.ndarray:
        """float32 (N, k): `content` (of this space's kind) projected."""
        if self.kind == "image":
            return project(content, self.basis, mapper=mapper)
        if self.kind == "table":
            return self.basis.transform(self.space.raw_features(content)).astype(np.float32)
        from prune_dagster.core.kinds.text import tfidf_features

        return self.basis.transform(tfidf_features(self.space, content)).astype(np.float32)


@dataclass
class RawFeatures:
    """A kind's raw features as plain numbers, fitted once (what a classifier or a neighbour search reads
    when no learned representation is used): flattened pixels; standardised columns with one-hot
    categories; TF-IDF (sparse) of the tokens."""

    kind: str
    space: Any = None  # tables: the TableSpace; texts: the training texts the TF-IDF vocabulary is fitted on

    @classmethod
    def fit(cls, kind: str, content: Any) -> RawFeatures:
        if kind == "table":
            from prune_dagster.core.kinds.table import TableSpace

            return cls(kind, TableSpace.fit(content))
        return cls(kind, np.asarray(content, dtype=object) if kind == "text" else None)

    def transform(self, content: Any) -> Any:
        if self.kind == "image":
            from prune_dagster.core.embedding.pca import flatten

            return flatten(content)
        if self.kind == "table":
            return self.space.raw_features(content)
        from prune_dagster.core.kinds.text import tfidf_features

        return tfidf_features(self.space, content)
