"""Planting known defects into the training split of a real table or corpus (benchmarks/kinds_defects.py
says which and why), and the raw features Datalab's duplicate search reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import real_data

FLIPS, EXACT, NEAR, OUTLIERS = 0.10, 0.01, 0.01, 0.005
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


def source_frame(kind: str, seed: int) -> tuple[pd.DataFrame, str]:
    """The real file as a frame with a `split` column (Adult's own; a stratified 80/20 one for the corpus)."""
    if kind == "table":
        return pd.read_csv(real_data.adult(), keep_default_na=False, dtype=str), "label"
    frame = pd.read_csv(real_data.rotten_tomatoes(), keep_default_na=False, dtype=str)
    from prune_dagster.core.data.dataset import stratified_split

    labels = pd.factorize(frame["label"])[0]
    return frame.assign(split=stratified_split(labels, 0.2, seed)), "label"


def _near_copy(kind: str, row: pd.Series, rng: np.random.Generator, vocab: np.ndarray, numeric: list[str]):
    row = row.copy()
    if kind == "table":
        for col in numeric:  # every number jittered within 1% (zeros stay zero)
            row[col] = repr(float(row[col]) * (1 + rng.uniform(-0.01, 0.01)))
        return row
    words = row["text"].split()
    k = int(rng.integers(len(words) - 1))
    words[k], words[k + 1] = words[k + 1], words[k]  # two adjacent words swapped
    words[int(rng.integers(len(words)))] = str(rng.choice(vocab))  # one word replaced
    row["text"] = " ".join(words)
    return row


def _outlier(kind: str, row: pd.Series, rng: np.random.Generator, frame: pd.DataFrame, numeric: list[str]):
    row = row.copy()
    if kind == "table":
        for col in frame.columns.drop(["id", "label", "split"]):
            if col in numeric:
                row[col] = repr(float(pd.to_numeric(frame[col]).max()) * rng.uniform(20, 100))
            else:
                row[col] = str(rng.choice(frame[col].unique()))
        return row
    row["text"] = " ".join("".join(rng.choice(LETTERS, int(rng.integers(3, 9)))) for _ in range(rng.integers(8, 20)))
    return row


def plant(kind: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, set]:
    """(dirty frame, truth (id, defect, source), ids of natural exact duplicates in the training split)."""
    rng = np.random.default_rng([seed, 21])
    frame, label = source_frame(kind, seed)
    numeric = [c for c in frame.columns.drop(["id", "label", "split"])
               if pd.to_numeric(frame[c], errors="coerce").notna().all()] if kind == "table" else []
    train = np.flatnonzero(frame["split"] == "train")
    if kind == "text":  # a near copy of a 3-word text is a different text: sources have at least 8 words
        long = train[frame["text"].iloc[train].str.split().str.len().to_numpy() >= 8]
    else:
        long = train
    n = len(train)
    picked = rng.permutation(long)
    near_src, exact_src = picked[:int(NEAR * n)], picked[int(NEAR * n):int((NEAR + EXACT) * n)]
    vocab = np.array(sorted({w for t in frame["text"] for w in str(t).split()})) if kind == "text" else np.array([])
    rows, truth = [], []
    for tag, sources in (("exact", exact_src), ("near", near_src)):
        for k, p in enumerate(sources):
            row = frame.iloc[p].copy()
            if tag == "near":
                row = _near_copy(kind, row, rng, vocab, numeric)
            elif kind == "text":
                row["text"] = "  " + row["text"].upper() + " "
            rows.append(row.rename(None).to_dict() | {"id": f"{tag}{k}"})
            truth.append((f"{tag}{k}", tag, frame["id"].iloc[p]))
    for k, p in enumerate(rng.choice(train, int(OUTLIERS * n), replace=False)):
        rows.append(_outlier(kind, frame.iloc[p], rng, frame, numeric).to_dict() | {"id": f"outlier{k}"})
        truth.append((f"outlier{k}", "outlier", ""))
    dirty = pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)
    classes = np.array(sorted(frame[label].unique()))
    flip = rng.choice(np.flatnonzero(dirty["split"] == "train"), int(FLIPS * n), replace=False)
    for p in flip:
        dirty.loc[p, label] = str(rng.choice(classes[classes != dirty.loc[p, label]]))
        truth.append((dirty.loc[p, "id"], "flip", ""))
    natural = natural_duplicates(kind, frame)
    return dirty, pd.DataFrame(truth, columns=["id", "defect", "source"]), natural


def natural_duplicates(kind: str, frame: pd.DataFrame) -> set:
    """Ids of real training rows identical (after the step's normalisation) to another real row, of the
    training split or the test split (the step removes a copy of a test row as `duplicate_of_test`)."""
    if kind == "text":
        from prune_dagster.core.kinds.text import normalize

        key = frame["text"].map(normalize)
    else:
        key = frame.drop(columns=["id", "label", "split"]).agg("\x1f".join, axis=1)
    train = (frame["split"] == "train").to_numpy()
    return set(frame["id"][key.duplicated(keep=False).to_numpy() & train])


def write_dirty(frame: pd.DataFrame, kind: str, folder: Path) -> Path:
    path = folder / f"dirty_{kind}.csv"
    frame.to_csv(path, index=False)
    return path


def raw_matrix(dataset, ids: np.ndarray) -> np.ndarray:
    """Dense raw features of `ids`: standardised columns with one-hot categories, or TF-IDF through SVD."""
    from sklearn.decomposition import TruncatedSVD

    from prune_dagster.core.data.dataset import content_of
    from prune_dagster.core.embedding.raw_space import RawFeatures

    content = content_of(dataset, dataset.index_of(ids))
    x = RawFeatures.fit(dataset.kind, content).transform(content)
    if dataset.kind == "text":
        x = TruncatedSVD(n_components=128, random_state=0).fit_transform(x)
    return np.asarray(x, dtype=np.float32)
