"""Check of the table model's defaults: TableMLP against gradient boosting on UCI Adult.

    python benchmarks/real_data.py              # once: data/real/adult.csv
    python benchmarks/table_model_check.py [--epochs 15] [--seeds 0 1 2] [--out PATH]

Data: data/real/adult.csv read by `load_frame_file` (its split column: the official 32,561 train /
16,281 test rows). TableEncoder is fitted on the train rows; each TableMLP variant (dropout, learning
rate) trains with Adam, batch 256, one thread, on the train rows, once per seed; accuracy and balanced
accuracy on the test rows are reported as mean and standard deviation over the seeds. The reference is
sklearn's HistGradientBoostingClassifier (seed 0), once on TableSpace.raw_features (what the sklearn-based
steps read) and once on the numbers plus the categorical codes with native categorical support.
Seconds are wall seconds of the fit on this machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import balanced_accuracy_score

from prune_dagster.core.data.frames import FrameOptions, load_frame_file
from prune_dagster.core.training.table_model import TableEncoder, TableMLP

ROOT = Path(__file__).resolve().parents[1]
ADULT = ROOT / "data" / "real" / "adult.csv"
OUT = ROOT / "benchmarks" / "results" / "table_model_check.json"
VARIANTS = ({"dropout": 0.0, "lr": 1e-3}, {"dropout": 0.1, "lr": 1e-3}, {"dropout": 0.1, "lr": 3e-3},
            {"dropout": 0.3, "lr": 1e-3})


def train_mlp(x: torch.Tensor, y: torch.Tensor, encoder: TableEncoder, n_classes: int, dropout: float, lr: float,
              epochs: int, seed: int = 0) -> tuple[TableMLP, float]:
    """Adam, batch 256, cross-entropy; returns the model (in eval mode) and the training seconds."""
    torch.manual_seed(seed)
    model = TableMLP(encoder.space.n_numeric, encoder.space.cardinalities, n_classes, dropout=dropout)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(256):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    return model.eval(), time.perf_counter() - start


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {"accuracy": round(float((y_true == y_pred).mean()), 4),
            "balanced_accuracy": round(float(balanced_accuracy_score(y_true, y_pred)), 4)}


def gradient_boosting(train: pd.DataFrame, test: pd.DataFrame, y_train: np.ndarray, y_test: np.ndarray,
                      encoder: TableEncoder) -> list[dict]:
    rows = []
    space = encoder.space
    for name, prepare, categorical in (
            ("hgb raw_features", space.raw_features, None),
            ("hgb native categorical", lambda f: np.hstack([space.numeric(f), space.codes(f)]),
             np.arange(space.n_numeric, space.n_numeric + len(space.categorical_columns)))):
        model = HistGradientBoostingClassifier(random_state=0, categorical_features=categorical)
        start = time.perf_counter()
        model.fit(prepare(train), y_train)
        seconds = time.perf_counter() - start
        rows.append({"model": name, **scores(y_test, model.predict(prepare(test))), "seconds": round(seconds, 2)})
    return rows


def mlp_row(variant: dict, x_train: torch.Tensor, x_test: torch.Tensor, y_train: np.ndarray, y_test: np.ndarray,
            encoder: TableEncoder, n_classes: int, args: argparse.Namespace) -> dict:
    """One TableMLP variant trained once per seed: mean and std of the test scores, mean seconds."""
    runs = []
    for seed in args.seeds:
        model, seconds = train_mlp(x_train, torch.from_numpy(y_train), encoder, n_classes, variant["dropout"],
                                   variant["lr"], args.epochs, seed)
        with torch.no_grad():
            runs.append({**scores(y_test, model(x_test).argmax(1).numpy()), "seconds": seconds})
        print(variant, seed, runs[-1], flush=True)
    row = {"model": f"TableMLP dropout={variant['dropout']} lr={variant['lr']:g}"}
    for key in ("accuracy", "balanced_accuracy"):
        values = [r[key] for r in runs]
        row |= {key: round(float(np.mean(values)), 4), f"{key}_std": round(float(np.std(values)), 4)}
    return row | {"seconds": round(float(np.mean([r["seconds"] for r in runs])), 2), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_frame_file(ADULT, FrameOptions(split_column="split"))
    train, test = data.split == "train", data.split == "test"
    frame = data.table
    encoder = TableEncoder.fit(frame[train].reset_index(drop=True))
    x_train, x_test = encoder.tensor(frame[train]), encoder.tensor(frame[test])
    y_train, y_test = data.labels[train], data.labels[test]
    rows = [mlp_row(variant, x_train, x_test, y_train, y_test, encoder, data.n_classes, args)
            for variant in VARIANTS]
    rows += gradient_boosting(frame[train], frame[test], y_train, y_test, encoder)
    print(f"\nUCI Adult: {int(train.sum())} train / {int(test.sum())} test rows, {args.epochs} epochs, 1 thread")
    print(f"seeds {args.seeds} (TableMLP: mean ± std over seeds; hgb: seed 0)")
    print(f"{'model':36} {'accuracy':>16} {'bal.acc':>16} {'seconds':>8}")
    for row in rows:
        acc = f"{row['accuracy']:.4f} ± {row.get('accuracy_std', 0):.4f}"
        bal = f"{row['balanced_accuracy']:.4f} ± {row.get('balanced_accuracy_std', 0):.4f}"
        print(f"{row['model']:36} {acc:>16} {bal:>16} {row['seconds']:8.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": str(ADULT.relative_to(ROOT)), "n_train": int(train.sum()),
                                    "n_test": int(test.sum()), "epochs": args.epochs, "batch": 256, "seeds": args.seeds,
                                    "threads": 1, "machine": platform.machine(), "torch": torch.__version__,
                                    "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
