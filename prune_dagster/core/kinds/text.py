"""Pure algorithms on texts (1-D object arrays of str): normalisation, tokens, exact and near duplicates,
TF-IDF features and vocabulary pruning. The one import for the text kind: the near-duplicate search lives
in `text_near.py` and the tokeniser in `text_tokens.py`, re-exported here."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
from scipy import sparse

from prune_dagster.core.errors import ConfigError, DatasetError
from prune_dagster.core.kinds.text_near import (
    DEFAULT_SHINGLE,
    DEFAULT_THRESHOLD,
    SHINGLES,
    TextNearIndex,
    check_texts,
    near_duplicate_pairs,
)
from prune_dagster.core.kinds.text_tokens import normalize, tokens

__all__ = ["DEFAULT_SHINGLE", "DEFAULT_THRESHOLD", "SHINGLES", "VOCABULARY_METHODS", "TextNearIndex",
           "content_keys", "near_duplicate_pairs", "normalize", "prune_vocabulary", "tfidf_features", "tokens"]

VOCABULARY_METHODS = ("document_frequency", "chi2", "none")


def content_keys(texts: Any) -> np.ndarray:
    """(N, 2) uint64: the 128-bit blake2b digest of each normalised text, so texts that differ only in case,
    whitespace or Unicode form get equal keys (the layout of the image step's `hash_block`)."""
    texts = check_texts(texts)
    digests = b"".join(hashlib.blake2b(normalize(t).encode("utf-8", "surrogatepass"), digest_size=16).digest()
                       for t in texts)
    return np.frombuffer(digests, dtype=np.uint64).reshape(-1, 2).copy()


def tfidf_features(train_texts: Any, texts: Any, vocabulary: tuple[str, ...] | None = None) -> sparse.csr_matrix:
    """TF-IDF of `texts` (rows L2-normalised, float32) with the vectoriser fitted on `train_texts`: the
    `tokens` of each text, terms in at least 2 training texts (or exactly `vocabulary`, e.g. from
    `prune_vocabulary`), sublinear term frequency. What a scikit-learn classifier or a kNN reads when
    there is no learned representation."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    train, target = check_texts(train_texts), check_texts(texts)
    vectorizer = TfidfVectorizer(tokenizer=tokens, lowercase=False, token_pattern=None, sublinear_tf=True,
                                 min_df=1 if vocabulary is not None else 2, vocabulary=vocabulary,
                                 dtype=np.float32)
    try:
        vectorizer.fit(train)
    except ValueError as exc:  # sklearn's "empty vocabulary"
        raise DatasetError(f"TF-IDF: no token occurs in 2 or more of the {len(train)} training texts; "
                           "expected texts with words in common") from exc
    return sparse.csr_matrix(vectorizer.transform(target))


def _check_vocabulary_settings(method: str, min_df: int, max_df: float, keep_fraction: float) -> None:
    if method not in VOCABULARY_METHODS:
        raise ConfigError(f"method={method!r}; expected one of {VOCABULARY_METHODS}")
    if isinstance(min_df, bool) or not isinstance(min_df, int | np.integer) or min_df < 1:
        raise ConfigError(f"min_df={min_df!r}; expected a number of documents >= 1")
    if not 0.0 < max_df <= 1.0:
        raise ConfigError(f"max_df={max_df!r}; expected a share of documents in (0, 1]")
    if not 0.0 < keep_fraction <= 1.0:
        raise ConfigError(f"keep_fraction={keep_fraction!r}; expected a share of tokens in (0, 1]")


def document_counts(texts: np.ndarray) -> tuple[np.ndarray, sparse.csr_matrix]:
    """(the tokens sorted, binary document-token matrix)."""
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(tokenizer=tokens, lowercase=False, token_pattern=None, binary=True)
    try:
        counts = vectorizer.fit_transform(texts)
    except ValueError as exc:  # sklearn's "empty vocabulary"
        raise DatasetError(f"vocabulary: none of the {len(texts)} texts has a word token") from exc
    return vectorizer.get_feature_names_out(), sparse.csr_matrix(counts)


def prune_vocabulary(texts: Any, labels: np.ndarray, method: str = "document_frequency", min_df: int = 2,
                     max_df: float = 1.0, keep_fraction: float = 1.0) -> tuple[tuple[str, ...], dict[str, Any]]:
    """(kept tokens, sorted; metadata). document_frequency: the tokens in at least `min_df` texts and at most
    a `max_df` share of them. chi2: those, then the top `keep_fraction` by scikit-learn's chi2 score against
    `labels` (ties by token, so the result is reproducible). none: every token. Raises ConfigError naming
    the settings when nothing would be kept."""
    _check_vocabulary_settings(method, min_df, max_df, keep_fraction)
    texts = check_texts(texts)
    labels = np.asarray(labels)
    if len(labels) != len(texts):
        raise DatasetError(f"vocabulary: {len(labels)} labels for {len(texts)} texts; expected one per text")
    names, counts = document_counts(texts)
    df = np.asarray(counts.sum(axis=0)).ravel()
    meta: dict[str, Any] = {"method": method, "n_tokens": len(names), "min_df": int(min_df), "max_df": max_df,
                            "keep_fraction": keep_fraction}
    if method == "none":
        return tuple(names.tolist()), {**meta, "n_kept": len(names)}
    rare, common = df < min_df, df > max_df * len(texts)
    keep = ~rare & ~common
    meta.update(dropped_rare=int(rare.sum()), dropped_common=int((common & ~rare).sum()))
    if method == "chi2" and keep.any():
        from sklearn.feature_selection import chi2

        cols = np.flatnonzero(keep)
        scores = np.nan_to_num(chi2(counts[:, cols], labels)[0], nan=0.0)
        n_top = max(1, math.ceil(keep_fraction * len(cols)))
        order = np.lexsort((names[cols], -scores))[:n_top]  # highest score first, ties by token
        keep = np.zeros_like(keep)
        keep[cols[order]] = True
        meta.update(dropped_chi2=int(len(cols) - n_top),
                    top_chi2=[str(names[cols[k]]) for k in order[:10]])
    if not keep.any():
        raise ConfigError(f"vocabulary pruning with method={method!r}, min_df={min_df}, max_df={max_df} keeps none "
                          f"of the {len(names)} tokens; lower min_df or raise max_df")
    return tuple(names[keep].tolist()), {**meta, "n_kept": int(keep.sum())}
