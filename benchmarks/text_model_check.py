"""Benchmark: the text CNN (Kim 2014) on real Rotten Tomatoes, against TF-IDF + logistic regression.

    python benchmarks/text_model_check.py [--epochs 8] [--out benchmarks/results/text_model_check.json]

Data: data/real/rotten_tomatoes.csv (benchmarks/real_data.py), the 13,891 texts that are not missing,
3 classes (fresh / rotten / plot); the project's stratified 80/20 split, seed 0. One torch thread.
Reference: TF-IDF (`tfidf_features`: min_df 2, sublinear tf) + LogisticRegression (C=1 and the best of
C in 0.3, 1, 3, 10 on the test set: an optimistic bound), with the project's tokens (words only) and with
! and ? as tokens too (what keeping them would buy). CNN: `TextEncoder` (vocabulary of tokens seen twice,
max_len the 95th percentile of token counts) and `TextCNN` variants, Adam, batch 64, seed 0; test accuracy
and cumulative training seconds after every epoch.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import rotten_tomatoes  # noqa: E402

from prune_dagster.core.data.dataset import TEST, stratified_split  # noqa: E402
from prune_dagster.core.kinds.text import normalize, tfidf_features  # noqa: E402
from prune_dagster.core.training.text_model import TextCNN, TextEncoder  # noqa: E402

VARIANTS = {  # name: (embed_dim, dropout, lr)
    "emb64_drop0.5_lr1e-3": (64, 0.5, 1e-3),
    "emb128_drop0.5_lr1e-3": (128, 0.5, 1e-3),
    "emb64_drop0.2_lr1e-3": (64, 0.2, 1e-3),
    "emb64_drop0.5_lr3e-3": (64, 0.5, 3e-3),
    "emb64_drop0.5_lr1e-2": (64, 0.5, 1e-2),
}
WITH_MARKS = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[!?]")


def with_marks(text: str) -> list[str]:
    """The project's tokens plus ! and ? (the alternative `tokens` was measured against)."""
    return WITH_MARKS.findall(normalize(text).replace("\u2019", "'"))


def logistic(x_train, y_train, x_test, y_test) -> dict[str, float]:
    out = {}
    for c in (0.3, 1.0, 3.0, 10.0):
        clf = LogisticRegression(C=c, max_iter=2000).fit(x_train, y_train)
        out[f"C={c:g}"] = round(float((clf.predict(x_test) == y_test).mean()), 4)
    return out


def reference(texts: np.ndarray, labels: np.ndarray, train: np.ndarray) -> dict[str, dict[str, float]]:
    start = time.perf_counter()
    feats = tfidf_features(texts[train], texts)
    words = logistic(feats[train], labels[train], feats[~train], labels[~train])
    vec = TfidfVectorizer(tokenizer=with_marks, lowercase=False, token_pattern=None, min_df=2, sublinear_tf=True)
    marked = vec.fit(texts[train]).transform(texts)
    marks = logistic(marked[train], labels[train], marked[~train], labels[~train])
    return {"tokens": words, "tokens_and_!?": marks, "seconds": round(time.perf_counter() - start, 1)}


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[s:s + 512]).argmax(1) for s in range(0, len(x), 512)])
    model.train()
    return round(float((pred == y).float().mean()), 4)


def train_cnn(enc: TextEncoder, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
              y_test: torch.Tensor, variant: tuple[int, float, float], epochs: int) -> list[dict]:
    embed_dim, dropout, lr = variant
    torch.manual_seed(0)
    model = TextCNN(len(enc.vocabulary), 3, embed_dim=embed_dim, dropout=dropout)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    curve, seconds = [], 0.0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        for idx in torch.randperm(len(x_train), generator=gen).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
        seconds += time.perf_counter() - start
        curve.append({"epoch": epoch, "test_accuracy": accuracy(model, x_test, y_test),
                      "train_accuracy": accuracy(model, x_train, y_train), "seconds": round(seconds, 1)})
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "text_model_check.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    frame = pd.read_csv(rotten_tomatoes()).dropna(subset=["text"])
    texts = frame["text"].astype(str).to_numpy(dtype=object)
    names, labels = np.unique(frame["label"].to_numpy(dtype=str), return_inverse=True)
    train = stratified_split(labels, 0.2, seed=0) != TEST
    print(f"{len(texts)} texts, classes {dict(zip(names.tolist(), np.bincount(labels).tolist(), strict=True))}, "
          f"{int(train.sum())} train / {int((~train).sum())} test")
    ref = reference(texts, labels, train)
    print(f"TF-IDF + LogisticRegression test accuracy: {ref}")
    start = time.perf_counter()
    enc = TextEncoder.fit(texts[train])
    x = enc.tensor(texts)
    y = torch.from_numpy(labels.astype(np.int64))
    encode_s = round(time.perf_counter() - start, 1)
    print(f"encoder: {len(enc.vocabulary)} ids, max_len {enc.max_len}, fit + encode {encode_s} s")
    mask = torch.from_numpy(train)
    runs = {}
    for name in args.variants:
        curve = train_cnn(enc, x[mask], y[mask], x[~mask], y[~mask], VARIANTS[name], args.epochs)
        runs[name] = curve
        print(f"{name:24} " + " ".join(f"e{c['epoch']}:{c['test_accuracy']:.3f}/{c['seconds']:.0f}s" for c in curve),
              flush=True)
    out = {"data": "data/real/rotten_tomatoes.csv", "n_texts": len(texts), "classes": names.tolist(),
           "split": "stratified 80/20, seed 0", "threads": 1, "batch_size": 64, "optimizer": "adam",
           "tfidf_logistic_regression": ref, "encoder": {"ids": len(enc.vocabulary), "max_len": enc.max_len,
                                                           "seconds": encode_s},
           "cnn": runs, "machine": platform.processor() or platform.machine()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
