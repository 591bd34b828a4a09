"""Where the project keeps what runs write: outputs, the MLflow store, the Dagster home.

Everything defaults to `<project>/data/` (git-ignored) and can be moved by environment variables:
`PRUNE_OUTPUT_DIR`, `MLFLOW_TRACKING_URI`, `DAGSTER_HOME`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def project_root() -> Path:
    """The source checkout when installed editable; otherwise the working directory."""
    here = Path(__file__).resolve().parents[1]
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd().resolve()


def data_dir() -> Path:
    return Path(os.environ.get("PRUNE_DATA_DIR", project_root() / "data")).resolve()


def output_dir() -> Path:
    value = os.environ.get("PRUNE_OUTPUT_DIR")
    return Path(value).resolve() if value else data_dir() / "outputs"


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI`, else MLflow 3's embedded SQLite store at an absolute path."""
    value = os.environ.get("MLFLOW_TRACKING_URI")
    if value:
        return value
    return f"sqlite:///{data_dir() / 'mlflow.db'}"


if __name__ == "__main__":  # used by the Makefile: `python -m prune_dagster.paths tracking-uri`
    what = sys.argv[1] if len(sys.argv) > 1 else "tracking-uri"
    print({"tracking-uri": tracking_uri, "output-dir": output_dir, "data-dir": data_dir}[what]())
