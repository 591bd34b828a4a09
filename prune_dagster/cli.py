"""`prune-dagster run`: materialize the whole graph on a persistent Dagster instance and print a summary.

Command-line settings become Dagster run config (`--dataset` is `raw_dataset.source`, `--set A.K=V` is
`ops.A.config.K`), checked against the job's config schema and every step's bounds before anything runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from prune_dagster import paths, settings
from prune_dagster.core.infra.locks import file_lock


class UsageError(Exception):
    """A mistake on the command line: printed as one line, exit code 2, before anything runs."""


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`asset.key=value` → Dagster run config ({"ops": {asset: {"config": {key: value}}}})."""
    ops: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair or "." not in pair.split("=", 1)[0]:
            raise UsageError(f"--set {pair!r}: expected ASSET.KEY=VALUE, e.g. pruned_dataset.target_fraction=0.5")
        key, raw = pair.split("=", 1)
        asset, field = key.split(".", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        ops.setdefault(asset, {"config": {}})["config"][field] = value
    return {"ops": ops} if ops else {}


def shown(value: Any) -> str:
    """A value as the user typed it after `=`."""
    return value if isinstance(value, str) else json.dumps(value)


def check_overrides(job: Any, ops: dict[str, Any]) -> None:
    """Refuse a setting the job does not have or a value it does not accept, naming what it accepts."""
    from prune_dagster.defs.config import accepts, config_class, config_errors

    settable = {n.name: config_class(n.definition) for n in job.graph.nodes}
    settable = {name: cls for name, cls in settable.items() if cls is not None}
    for asset, entry in ops.items():
        values = entry.get("config", {})
        if asset not in settable:
            name, value = next(iter(values.items()))
            raise UsageError(f"--set {asset}.{name}={shown(value)}: {asset!r} is not a step of {job.name} "
                             f"with settings; steps with settings: {', '.join(sorted(settable))}")
        cls = settable[asset]
        for name, value in values.items():
            if name == "retained_fraction" and "target_fraction" in cls.model_fields:
                from prune_dagster.core.selection.strategies import RENAMED

                raise UsageError(f"--set {asset}.{name}={shown(value)}: {RENAMED}")
            if name not in cls.model_fields:
                raise UsageError(f"--set {asset}.{name}={shown(value)}: {asset} has no setting {name!r}; "
                                 f"its settings: {', '.join(cls.model_fields)}")
        for name, value, what in config_errors(cls, values):
            field = cls.model_fields.get(name)
            wants = f"{asset}.{name} accepts {accepts(field)}" if field is not None else what
            raise UsageError(f"--set {asset}.{name}={shown(value)}: {wants}" if name
                             else f"--set {asset}: {what}")


def source_spec(dataset: str) -> str:
    """A path made absolute (the source sensor re-reads it later, from another working directory);
    built-in and registered names as given, as load_source reads them first."""
    from prune_dagster.core.data.sources import NAMED_SOURCES

    if dataset == "digits" or any(dataset.startswith(prefix) for prefix in NAMED_SOURCES):
        return dataset
    path = Path(dataset).expanduser()
    if not path.exists():
        raise UsageError(f"--dataset {dataset}: no such file or folder; expected digits, "
                         f"{', '.join(sorted(NAMED_SOURCES))}, an .npz path or an image folder")
    return str(path.resolve())


def job_run_config(job: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The run config the command line asks for, checked against the job's config schema."""
    import dagster as dg

    run_config = parse_overrides(args.set)
    check_overrides(job, run_config.get("ops", {}))
    if args.dataset:
        if not job.has_node_named("raw_dataset"):
            raise UsageError(f"--dataset {args.dataset}: {job.name} does not load a source (it reads the latest "
                             "pruned dataset); leave --dataset out or run prune_job")
        source = run_config.setdefault("ops", {}).setdefault("raw_dataset", {"config": {}})["config"]
        source["source"] = source_spec(args.dataset)
    try:  # Dagster's own check of the whole run config (types, choices, every step's bounds)
        dg.validate_run_config(job, run_config)
    except dg.DagsterInvalidConfigError as err:
        first = err.errors[0].message if err.errors else str(err)
        raise UsageError(" ".join(first.split())) from None
    return run_config


def format_summary(summary: dict[str, Any], dagster_home: str, mlflow_url: str = "", dagster_url: str = "") -> str:
    lines = [f"dataset {summary['dataset']}: {summary['n_samples']} samples, "
             f"{summary['n_train_split']} train / {summary['n_test']} test (test set never pruned)", ""]
    lines.append(f"  {'step':<22}{'in':>7}{'kept':>7}  removed by reason")
    for s in summary["steps"]:
        reasons = ", ".join(f"{k}={v}" for k, v in s["removed_by_reason"].items()) or "-"
        lines.append(f"  {s['step']:<22}{s['n_in']:>7}{s['n_out']:>7}  {reasons}  ({s['seconds']:.1f}s)")
    compute = summary.get("compute", {})
    lines += [
        "",
        f"kept {summary['n_kept']} of {summary['n_train_split']} training samples "
        f"(kept_fraction_of_train {summary['kept_fraction_of_train']:.3f}; "
        f"kept_fraction_of_cleaned {summary['kept_fraction_of_cleaned']:.3f} by the score step), "
        f"{summary['n_synthetic']} synthetic",
        f"test accuracy {summary['test_accuracy']:.4f} on {summary['n_test']} held-out samples",
        f"compute {compute.get('compute_seconds', 0):.1f} s and {compute.get('compute_sample_passes', 0):,} sample "
        f"passes in all (representation, steps, training); this run computed {compute.get('run_seconds', 0):.1f} s",
        f"MLflow run {summary['mlflow_run_id']} in {summary['mlflow_tracking_uri']}",
        f"  {mlflow_url or '(open with make mlflow-ui)'}  (after make mlflow-ui)",
        f"Dagster run {summary['dagster_run_id']} in DAGSTER_HOME={dagster_home}",
        f"  {dagster_url or '(open with make ui)'}  (after make ui)",
    ]
    return "\n".join(lines)


def dagster_run_url(run_id: str) -> str:
    from prune_dagster.defs.resources import dagster_run_url as url

    return url(run_id)


def run_dataset(run_config: dict[str, Any]) -> str:
    """The dataset a run loads: `raw_dataset.source` when given, else the default source."""
    given = run_config.get("ops", {}).get("raw_dataset", {}).get("config", {}).get("source")
    return str(given or settings.dataset())


def ui_urls(summary: dict[str, Any]) -> tuple[str, str]:
    """(MLflow run page, Dagster run page) for a finished prune_job run; the MLflow one is empty when the
    tracking store cannot say the run's experiment."""
    from prune_dagster.defs.resources import MlflowResource

    dagster_url = dagster_run_url(summary["dagster_run_id"])
    try:
        import mlflow

        mlflow.set_tracking_uri(summary["mlflow_tracking_uri"])
        exp = mlflow.get_run(summary["mlflow_run_id"]).info.experiment_id
        return MlflowResource(tracking_uri=summary["mlflow_tracking_uri"]).run_url(summary["mlflow_run_id"], exp), \
            dagster_url
    except Exception:  # a link is a convenience: the run and its outputs are already written
        return "", dagster_url


def resolve(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The job and its checked run config; UsageError for anything the command line got wrong."""
    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    from prune_dagster.definitions import defs

    names = sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__"))
    if args.job not in names:
        raise UsageError(f"--job {args.job}: expected one of {', '.join(names)}")
    job = defs.resolve_job_def(args.job)
    return job, job_run_config(job, args)


TELEMETRY_OFF = "telemetry:\n  enabled: false\n"  # else Dagster prints its telemetry banner on a new home


def own_home_config(path: Path) -> None:
    """The CLI's own DAGSTER_HOME: Dagster's defaults with telemetry off (a user's setting is kept)."""
    text = path.read_text() if path.exists() else ""
    if "telemetry" not in text:
        path.write_text(text + ("\n" if text and not text.endswith("\n") else "") + TELEMETRY_OFF)


def quiet_console(verbose: bool) -> None:
    """Hide library chatter that is no action for the user (torch.export's shape notes when MLflow
    saves a model, MLflow's store set-up lines and advisory warnings); `--verbose` shows it all."""
    import logging

    if verbose:
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow sets its logger's level when imported
    for name in ("mlflow", "torch._export", "torch.export", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in ("mlflow", "torch"):
        warnings.filterwarnings("ignore", category=UserWarning, module=module)
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)


# Errors that are a user's to fix (a dataset, a setting, a folder, a service): their message is the
# whole story. Anything else is reported by its class and message, still in one line.
USER_ERRORS = {"DatasetError", "ConfigError", "PruneError", "OutputFolderError", "MlflowUnavailableError",
               "EngineUnavailableError", "LockTimeout", "DagsterInvalidConfigError"}


def failure_cause(result: Any) -> str:
    """One line: the user's mistake behind a failed run (the deepest project error in the first failure's
    cause chain), else the first failure's deepest error as 'step X failed: Class: message'."""
    for event in result.all_events:
        data = event.step_failure_data if event.is_step_failure else getattr(event, "pipeline_failure_data", None)
        error = getattr(data, "error", None)
        chain = []
        while error is not None:
            chain.append(error)
            error = error.cause
        if not chain:
            continue
        mine = [e for e in chain if e.cls_name in USER_ERRORS]
        err = (mine or chain)[-1]
        message = " ".join(err.message.strip().split())
        if mine:  # Dagster prefixes the message with the error's (qualified) class name
            head, sep, rest = message.partition(": ")
            return rest if sep and head.split(".")[-1] == err.cls_name else message
        where = f"step {event.step_key} failed" if event.step_key else "the run failed"
        return f"{where}: {message}"
    return "the run failed (no step failure recorded)"


def reused_assets(result: Any) -> list[str]:
    """The assets this run took from an earlier run instead of computing (defs/cache.py), with the run."""
    out = []
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        if "reused_from_run" in meta:
            out.append(f"{event.asset_key.to_user_string()} (run {str(meta['reused_from_run'].value)[:8]})")
    return out


def check_output_folder() -> None:
    """The output folder must be a folder this process can write, before anything runs."""
    from prune_dagster.defs.resources import OutputFolderError, check_writable_folder

    try:
        check_writable_folder(paths.output_dir(), create=False)  # writes nothing: a refused run leaves no trace
    except OutputFolderError as err:
        raise UsageError(str(err)) from None


def run(args: argparse.Namespace) -> int:
    default_home = str(paths.data_dir() / "dagster_home")
    if not settings.dagster_home():
        os.environ["DAGSTER_HOME"] = default_home  # Dagster reads it from the environment
    Path(settings.dagster_home()).mkdir(parents=True, exist_ok=True)
    if settings.dagster_home() == default_home:  # our own home: the defaults, without telemetry
        own_home_config(Path(default_home) / "dagster.yaml")
    quiet_console(args.verbose)
    try:
        check_output_folder()
        job, run_config = resolve(args)
    except UsageError as err:
        print(f"prune-dagster: {err}", file=sys.stderr)
        return 2
    import dagster as dg

    start = time.perf_counter()
    # Two runs starting at once on a new home would race to create its SQLite tables.
    with file_lock(Path(settings.dagster_home()) / ".prune-init.lock", what="DAGSTER_HOME"):
        # A home without dagster.yaml makes Dagster print its welcome and telemetry notice: chatter, shown
        # with --verbose only (the CLI's own home has telemetry off; a user's home is never written to).
        with contextlib.redirect_stderr(sys.stderr if args.verbose else io.StringIO()):
            instance = dg.DagsterInstance.get()
            instance.get_run_records(limit=1)
            instance.get_latest_materialization_event(dg.AssetKey("raw_dataset"))
    with instance:
        # The step-by-step event log is in the Dagster UI; the console gets warnings and the summary.
        # Failures are summarised in one line below; their stack traces are in the UI and behind --verbose.
        run_config["loggers"] = {"console": {"config": {"log_level": "DEBUG" if args.verbose else "CRITICAL"}}}
        tags = {"dataset": run_dataset(run_config)}  # the Runs page filters by it
        if args.fresh:  # recompute every asset, even where settings and inputs are unchanged
            tags["prune/fresh"] = "true"
        if job.partitions_def is not None:  # sweep_job: one run over every partition
            from prune_dagster.defs.assets.sweep import all_partitions_tags

            tags.update(all_partitions_tags(job.partitions_def))
        with contextlib.redirect_stderr(sys.stderr if args.verbose else io.StringIO()):  # Dagster's notices
            result = job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False,
                                            tags=tags)
    seconds = time.perf_counter() - start
    if not result.success:
        print(f"prune-dagster: {failure_cause(result)}", file=sys.stderr)
        print(f"run {result.run_id} failed; the full log: make ui (Runs), or --verbose", file=sys.stderr)
        return 1
    summary_path = paths.output_dir() / "runs" / result.run_id / "summary.json"
    if args.job == "prune_job" and summary_path.exists():
        summary = json.loads(summary_path.read_text())
        print(format_summary(summary, settings.dagster_home(), *ui_urls(summary)))
        print(f"outputs: {summary_path.parent}")
    else:
        print(f"Dagster run: {dagster_run_url(result.run_id)}  (after make ui)")
    reused = reused_assets(result)
    if reused:
        print(f"reused (settings and inputs unchanged; --fresh recomputes): {', '.join(reused)}")
    print(f"{args.job} finished in {seconds:.1f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prune-dagster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="materialize the pruning graph and print a summary")
    p.add_argument("--dataset", help="raw_dataset.source: digits, dirty-digits, an .npz path or an image folder "
                                     "(default $PRUNE_DATASET or digits)")
    p.add_argument("--job", default="prune_job", help="prune_job (default), train_job or sweep_job")
    p.add_argument("--set", action="append", default=[], metavar="ASSET.KEY=VALUE",
                   help="override a step's config, e.g. pruned_dataset.target_fraction=0.5; an unknown "
                        "setting or a value it does not accept is refused before anything runs (exit code 2)")
    p.add_argument("--fresh", action="store_true", help="compute every asset again, even those whose settings "
                                                         "and inputs are unchanged (by default they are reused)")
    p.add_argument("--verbose", action="store_true", help="print Dagster's full event log and library warnings "
                                                           "(torch export, MLflow) hidden by default")
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
