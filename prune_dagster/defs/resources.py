"""Dagster resources: the MLflow tracking store and the output folder."""


import json
import os
import socket
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import dagster as dg

from prune_dagster import paths, settings
from prune_dagster.core.infra.locks import file_lock

# The runs table's landing view. MLflow 3.17 keeps a user's column choice in the browser (local
# storage); the one view a server can hand out is a "shared view": an experiment tag
# `mlflow.sharedViewState.<key>` holding the view's JSON, opened by `?viewStateShareKey=<key>` (what the
# UI's Share button makes). Column keys are `<type>.`<name>``. Of MLflow's default attribute columns
# only Dataset stays: the grid draws only what fits the window, and the metrics come after the attributes.
RUNS_VIEW_KEY = "prune-models"
RUNS_VIEW = {"selectedColumns": ["attributes.`Dataset`", "params.`strategy`",
                                 *(f"metrics.`{m}`" for m in ("test_accuracy", "retained_fraction", "target_fraction",
                                                              "n_train", "train_seconds"))]}


class MlflowUnavailableError(RuntimeError):
    """The tracking store cannot be reached."""


@dataclass(frozen=True)
class DatasetInput:
    """The dataset a run trained on, as MLflow's Dataset column shows it: name, content digest,
    source, and a small frame (e.g. class counts) for its schema and profile."""

    name: str
    digest: str
    source: str
    frame: Any = None  # pandas.DataFrame


def dagster_run_url(run_id: str) -> str:
    """The Dagster UI page of one run (address: settings.dagster_ui())."""
    return f"{settings.dagster_ui()}/runs/{run_id}"


def log_dataset_input(data: DatasetInput) -> None:
    """`mlflow.log_input` on the active run, so the runs table's Dataset column and filter work (MLflow
    keeps at most 36 characters of a digest)."""
    import mlflow.data
    import pandas as pd

    frame = data.frame if data.frame is not None else pd.DataFrame({"dataset": [data.name]})
    with warnings.catch_warnings():  # a non-URI source ("digits") resolves to a local source, with a warning
        warnings.simplefilter("ignore")
        ds = mlflow.data.from_pandas(frame, source=data.source, name=data.name, digest=data.digest[:36])
        mlflow.log_input(ds, context="training")


class MlflowResource(dg.ConfigurableResource):
    """A thin wrapper around `mlflow` (dagster-mlflow pins old releases; this needs none).

    `tracking_uri` empty → `MLFLOW_TRACKING_URI` or the project's SQLite store (an absolute path).
    """

    tracking_uri: str = ""
    experiment_name: str = "prune-dagster"

    def uri(self) -> str:
        return self.tracking_uri or paths.tracking_uri()

    def check_reachable(self, timeout: float = 5.0) -> None:
        """Fail fast with a clear message when an HTTP tracking server is down (MLflow's own client
        would retry for minutes and end in a deep traceback)."""
        parsed = urlparse(self.uri())
        if parsed.scheme not in ("http", "https"):
            return
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname, port), timeout=timeout).close()
        except OSError as exc:
            raise MlflowUnavailableError(
                f"MLflow tracking server {self.uri()} is unreachable ({exc.strerror or exc}). Start it, or set "
                "MLFLOW_TRACKING_URI to a reachable server or a sqlite:/// path; the pruning outputs are "
                "already written, so re-running train_job alone is enough afterwards."
            ) from exc

    def experiment_id(self) -> str:
        import mlflow

        self.check_reachable()
        mlflow.set_tracking_uri(self.uri())
        exp = mlflow.get_experiment_by_name(self.experiment_name)
        if exp is not None:
            return exp.experiment_id
        location = None
        parsed = urlparse(self.uri())
        if parsed.scheme == "sqlite":  # keep artifacts beside the database, not in the working directory
            location = Path(parsed.path).parent.joinpath("mlartifacts").resolve().as_uri()
        try:
            return mlflow.create_experiment(self.experiment_name, artifact_location=location)
        except Exception:  # another run created it between our lookup and create
            exp = mlflow.get_experiment_by_name(self.experiment_name)
            if exp is None:
                raise
            return exp.experiment_id

    @contextmanager
    def store_lock(self, timeout: float = 600.0) -> Iterator[None]:
        """For an SQLite store, one process at a time: two runs creating or migrating the same
        file at once fail deep inside alembic ("table already exists", "database is locked")."""
        parsed = urlparse(self.uri())
        if parsed.scheme != "sqlite":
            yield
            return
        with file_lock(Path(parsed.path).with_suffix(".lock"), timeout, f"MLflow store {self.uri()}"):
            yield

    def run_url(self, run_id: str, experiment_id: str | None = None) -> str:
        """The MLflow UI page of one run (MLflow 3's `#/experiments/<id>/runs/<run_id>`), at
        settings.mlflow_ui(): the tracking store may be a file the UI serves."""
        exp = experiment_id or self.experiment_id()
        return f"{settings.mlflow_ui()}/#/experiments/{exp}/runs/{run_id}"

    def runs_table_url(self, experiment_id: str | None = None) -> str:
        """The experiment's training-runs table (MLflow 3.17 otherwise opens a GenAI overview) in the
        RUNS_VIEW columns: writes that shared view's experiment tag, returns the URL that opens it."""
        import mlflow

        exp = experiment_id or self.experiment_id()
        mlflow.MlflowClient(self.uri()).set_experiment_tag(exp, f"mlflow.sharedViewState.{RUNS_VIEW_KEY}",
                                                           json.dumps(RUNS_VIEW))
        return f"{settings.mlflow_ui()}/#/experiments/{exp}/runs?viewStateShareKey={RUNS_VIEW_KEY}"

    @contextmanager
    def start_run(self, run_id: str | None = None, run_name: str | None = None,
                  tags: dict[str, str] | None = None, started: float | None = None) -> Iterator:
        """Open (or resume) one run and always close it, so no run leaks across steps. A new run
        with a `dagster_run_id` tag links back to that Dagster run (tag and description). `started`
        (a time.time() from before the work the run records) becomes a new run's start time, so
        the run's duration in the UI is the work's, not the logging's."""
        import mlflow

        tags = dict(tags or {})
        if run_id is None and tags.get("dagster_run_id"):
            tags["dagster_run_url"] = dagster_run_url(tags["dagster_run_id"])
            tags["mlflow.note.content"] = f"Dagster run: {tags['dagster_run_url']}"  # the run's description
        with self.store_lock():
            experiment_id = self.experiment_id()
            if run_id is None and started is not None:  # only the client sets a start time
                run_id = mlflow.MlflowClient().create_run(experiment_id, start_time=int(started * 1000),
                                                          tags=tags, run_name=run_name).info.run_id
                tags = {}
            with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=tags or None,
                                  experiment_id=None if run_id else experiment_id) as run:
                yield run

    def log_training_run(self, run_name: str, tags: dict[str, str], params: dict[str, Any],
                         metrics: dict[str, float], *, losses: Sequence[float] = (), model: Any = None,
                         model_name: str = "model", input_example: Any = None,
                         dataset: DatasetInput | None = None, started: float | None = None) -> str:
        """One model's run: params, metrics, the per-epoch `train_loss` and, when given, the model
        (with explicit pip requirements, so MLflow does not infer them) and `dataset` (else the tags'
        `dataset` / `dataset_digest`) as the run's input. The one logging path of
        `trained_model` and `sweep_models`; returns the run id. `started`: see `start_run`."""
        import mlflow

        with self.start_run(run_name=run_name, tags=tags, started=started) as run:
            if dataset is None and tags.get("dataset") and tags.get("dataset_digest"):  # e.g. the sweep's runs
                dataset = DatasetInput(tags["dataset"], tags["dataset_digest"], tags["dataset"])
            if dataset is not None:
                log_dataset_input(dataset)
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            for epoch, loss in enumerate(losses):
                mlflow.log_metric("train_loss", loss, step=epoch)
            if model is not None:
                from mlflow import pytorch as mlflow_pytorch

                mlflow_pytorch.log_model(model, name=model_name, input_example=input_example,
                                         pip_requirements=model_requirements())
            return run.info.run_id


def model_requirements() -> list[str]:
    """What loading a logged CNN needs, pinned to the versions that trained it."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("torch", "numpy", "mlflow")]


def model_name(strategy: str, fraction: float) -> str:
    """A logged model's name from its strategy and fraction: 'cnn-el2n-fraction-0_80' (MLflow refuses
    '.', '/', ':', '%' and quotes in names)."""
    name = f"cnn-{strategy}-fraction-{fraction:.2f}"
    return "".join("_" if ch in "./:%\"'" else ch for ch in name)


class OutputFolderError(OSError):
    """The output folder cannot hold a run's outputs (a file, not writable): checked before any step runs."""


def check_writable_folder(path: Path, create: bool = True) -> None:
    """Check a run can write into the folder `path` (creating it when `create`); OutputFolderError in one
    line if not. Without `create` nothing is written: the nearest existing folder must be writable."""
    where = f"output folder {path} (PRUNE_OUTPUT_DIR or resource output_store.root)"
    if path.exists() and not path.is_dir():
        raise OutputFolderError(f"{where} is a file; expected a folder the runs can write to")
    if not create:
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir():
            raise OutputFolderError(f"{where}: {existing} is a file; expected a folder the runs can write to")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OutputFolderError(f"{where} cannot be written ({existing} is not writable)")
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputFolderError(f"{where} cannot be written ({exc.strerror or exc})") from None


class OutputStore(dg.ConfigurableResource):
    """Where each run's kept_ids.csv, ledger.csv and summary.json go.

    `root` empty → `PRUNE_OUTPUT_DIR` or `<project>/data/outputs`. Each Dagster run writes into
    `runs/<run_id>/`; `latest` is a symlink swapped atomically to the newest complete run.
    """

    root: str = ""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        check_writable_folder(self.path())  # at the start of the run, before any step

    def path(self) -> Path:
        return Path(self.root).resolve() if self.root else paths.output_dir()

    def run_folder(self, run_id: str) -> Path:
        folder = self.path() / "runs" / run_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def mark_latest(self, run_id: str) -> Path:
        link = self.path() / "latest"
        tmp = self.path() / f".latest.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path("runs") / run_id, target_is_directory=True)
        os.replace(tmp, link)
        return link
