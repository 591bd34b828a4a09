"""Exact duplicates: identical pixel content, found by hashing each sample's bytes."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.ledger import StepResult, removed_frame

CONFLICT_POLICIES = ("drop_all", "keep_majority")


def content_hashes(images: np.ndarray) -> np.ndarray:
    """blake2b-128 of each sample's float32 bytes (hashlib releases the GIL; rows are small)."""
    rows = np.ascontiguousarray(images, dtype=np.float32).reshape(len(images), -1)
    rows = rows + np.float32(0.0)  # -0.0 → 0.0, so equal-looking pixels hash equal
    return np.array([hashlib.blake2b(r.tobytes(), digest_size=16).hexdigest() for r in rows], dtype=object)


def find_exact_duplicates(ids: np.ndarray, images: np.ndarray, labels: np.ndarray,
                          test_hashes: np.ndarray | None = None,
                          conflict_policy: str = "drop_all") -> StepResult:
    """Keep the first of each group of identical images.

    A group whose members carry different labels is a label conflict: `drop_all` removes every
    member; `keep_majority` keeps one of the strict-majority label (ties drop all). A training image
    identical to a test image is removed as `duplicate_of_test`, so the test set stays unseen.
    """
    if conflict_policy not in CONFLICT_POLICIES:
        raise ConfigError(f"conflict_policy={conflict_policy!r}; expected one of {CONFLICT_POLICIES}")
    hashes = content_hashes(images)
    df = pd.DataFrame({"id": np.asarray(ids, dtype=object), "hash": hashes, "label": labels,
                       "order": np.arange(len(ids))})
    df["group_size"] = df.groupby("hash")["id"].transform("size")
    df["n_labels"] = df.groupby("hash")["label"].transform("nunique")
    reason = pd.Series("", index=df.index, dtype=object)

    plain = (df["n_labels"] == 1) & (df["group_size"] > 1)
    first = df[plain].groupby("hash")["order"].transform("min")
    reason[plain & (df["order"] != first.reindex(df.index))] = "exact_duplicate"

    conflict = df["n_labels"] > 1
    if conflict.any():
        reason[conflict] = "label_conflict"
        if conflict_policy == "keep_majority":
            for _, g in df[conflict].groupby("hash"):
                votes = g["label"].value_counts()
                if len(votes) > 1 and votes.iloc[0] > votes.iloc[1]:
                    reason[g.index[g["label"] == votes.index[0]][0]] = ""

    if test_hashes is not None and len(test_hashes):
        leak = df["hash"].isin(set(test_hashes))
        reason[leak] = "duplicate_of_test"

    out = reason != ""
    removed = removed_frame(df.loc[out, "id"], reason[out], df.loc[out, "group_size"])
    return StepResult(removed=removed, metadata={
        "duplicate_groups": int(df.loc[df["group_size"] > 1, "hash"].nunique()),
        "label_conflict_groups": int(df.loc[conflict, "hash"].nunique()),
    })
