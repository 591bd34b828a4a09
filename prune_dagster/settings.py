"""The one place environment variables are read: defaults at the edge, nothing else.

Every setting a run uses is a Dagster Config field (the Launchpad shows it, `--set ASSET.KEY=VALUE`
sets it) or a resource field (`defs/resources.py`, `defs/engine.py`, `defs/io.py`). An empty field
means "the default", and the default comes from here, read when it is needed (so a test or a shell
can change it between runs). The few settings Dagster cannot take as run config (partitions,
schedules, sensors, where the project's folders are) are read when the definitions load.

| variable                 | default                   | fills                                                  |
|--------------------------|---------------------------|--------------------------------------------------------|
| `PRUNE_DATASET`          | `digits`                  | `raw_dataset.source` when empty; the source sensor's default |
| `PRUNE_OVERRIDES`        | none                      | `validated.overrides` when empty                       |
| `PRUNE_NEW_SOURCE`       | none                      | `incremental_update.new_source` when empty             |
| `PRUNE_DATA_DIR`         | `<project>/data`          | the CLI's Dagster home, the default MLflow store       |
| `PRUNE_OUTPUT_DIR`       | `<data dir>/outputs`      | resource `output_store.root` when empty                |
| `MLFLOW_TRACKING_URI`    | `sqlite:///<data dir>/mlflow.db` | resource `mlflow.tracking_uri` when empty       |
| `PRUNE_ENGINE_ADDRESS`   | in-process                | resource `engine.address` when empty                   |
| `PRUNE_BLAS_THREADS`     | `1`                       | resource `engine.blas_threads` when 0                  |
| `PRUNE_TORCH_THREADS`    | `0` (torch's own choice)  | resource `engine.torch_threads` when 0                 |
| `PRUNE_SWEEP_STRATEGIES` | every strategy            | the sweep's strategy partitions (comma-separated)      |
| `PRUNE_SWEEP_FRACTIONS`  | `0.1,0.2,…,1.0`           | the sweep's fraction partitions (comma-separated)      |
| `PRUNE_SCHEDULE_CRON`    | `0 3 * * *`               | the `daily_prune` schedule's cron                      |
| `PRUNE_SENSOR_INTERVAL`  | `30`                      | seconds between the two sensors' evaluations           |
| `PRUNE_INCOMING`         | none                      | the folder `new_samples_sensor` watches for batches    |
| `PRUNE_MLFLOW_UI`        | `http://127.0.0.1:5000`   | MLflow UI address: Dagster metadata links, the CLI's output  |
| `PRUNE_DAGSTER_UI`       | `http://127.0.0.1:3000`   | Dagster UI address: MLflow run tag/description, the CLI      |
| `DAGSTER_HOME`           | CLI: `<data dir>/dagster_home` | Dagster's instance; `io_manager.base_dir` when empty |
"""

from __future__ import annotations

import os
from pathlib import Path

from prune_dagster.core.errors import ConfigError

DEFAULT_DATASET = "digits"
DEFAULT_SCHEDULE_CRON = "0 3 * * *"  # daily at 03:00
DEFAULT_SENSOR_INTERVAL_S = 30
DEFAULT_BLAS_THREADS = 1
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"  # `make mlflow-ui`
DEFAULT_DAGSTER_UI = "http://127.0.0.1:3000"  # `make ui`


def _get(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


def _int(name: str, default: int, minimum: int) -> int:
    raw = _get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number >= {minimum}") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r}: expected a whole number >= {minimum}")
    return value


def _list(name: str) -> list[str]:
    return [v.strip() for v in _get(name).split(",") if v.strip()]


def dataset() -> str:
    return _get("PRUNE_DATASET", DEFAULT_DATASET)


def overrides() -> str:
    return _get("PRUNE_OVERRIDES")


def edge_defaults() -> dict[str, str]:
    """What a step may read when its own setting is empty (StepInputs.environment): the overrides file."""
    return {"overrides": overrides()}


def new_source() -> str:
    return _get("PRUNE_NEW_SOURCE")


def incoming() -> str:
    return _get("PRUNE_INCOMING")


def data_dir(project_root: Path) -> Path:
    return Path(_get("PRUNE_DATA_DIR") or project_root / "data").resolve()


def output_dir(data: Path) -> Path:
    value = _get("PRUNE_OUTPUT_DIR")
    return Path(value).resolve() if value else data / "outputs"


def tracking_uri(data: Path) -> str:
    """`MLFLOW_TRACKING_URI`, else MLflow 3's embedded SQLite store at an absolute path."""
    return _get("MLFLOW_TRACKING_URI") or f"sqlite:///{data / 'mlflow.db'}"


def engine_address() -> str:
    return _get("PRUNE_ENGINE_ADDRESS")


def blas_threads() -> int:
    return _int("PRUNE_BLAS_THREADS", DEFAULT_BLAS_THREADS, 1)


def torch_threads() -> int:
    return _int("PRUNE_TORCH_THREADS", 0, 0)


def sweep_strategies() -> list[str]:
    return _list("PRUNE_SWEEP_STRATEGIES")


def sweep_fractions() -> list[str]:
    return _list("PRUNE_SWEEP_FRACTIONS")


def schedule_cron() -> str:
    return _get("PRUNE_SCHEDULE_CRON", DEFAULT_SCHEDULE_CRON)


def sensor_interval_s() -> int:
    return _int("PRUNE_SENSOR_INTERVAL", DEFAULT_SENSOR_INTERVAL_S, 1)


def dagster_home() -> str:
    """Dagster's own `DAGSTER_HOME` (empty when unset)."""
    return _get("DAGSTER_HOME")


def mlflow_ui() -> str:
    """Where a person opens MLflow (links point there; the tracking store may be a file)."""
    return _get("PRUNE_MLFLOW_UI", DEFAULT_MLFLOW_UI).rstrip("/")


def dagster_ui() -> str:
    """Where a person opens Dagster's UI (MLflow runs link back there)."""
    return _get("PRUNE_DAGSTER_UI", DEFAULT_DAGSTER_UI).rstrip("/")
