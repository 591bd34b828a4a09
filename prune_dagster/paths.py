"""Where the project keeps what runs write: outputs, the MLflow store, the Dagster home.

Everything defaults to `<project>/data/` (git-ignored); the environment variables that move it are
read in prune_dagster/settings.py (`PRUNE_DATA_DIR`, `PRUNE_OUTPUT_DIR`, `MLFLOW_TRACKING_URI`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from prune_dagster import settings


def project_root() -> Path:
    """The source checkout when installed editable; otherwise the working directory."""
    here = Path(__file__).resolve().parents[1]
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd().resolve()


def data_dir() -> Path:
    return settings.data_dir(project_root())


def output_dir() -> Path:
    return settings.output_dir(data_dir())


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI`, else MLflow 3's embedded SQLite store at an absolute path."""
    return settings.tracking_uri(data_dir())


if __name__ == "__main__":  # used by the Makefile: `python -m prune_dagster.paths tracking-uri`
    what = sys.argv[1] if len(sys.argv) > 1 else "tracking-uri"
    print({"tracking-uri": tracking_uri, "output-dir": output_dir, "data-dir": data_dir}[what]())
