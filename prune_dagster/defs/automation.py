"""Recurring prunes: a cron schedule and a sensor on the data source.

A sensor with a cursor (not an observable source asset) watches the source: the source is a path
outside Dagster, the cursor of file fingerprints makes "nothing changed → no run" explicit and
testable, and its run requests show in the UI with the files that triggered them. It watches the
source the last materialization of `raw_dataset` read (its `source_spec` metadata: `--dataset`, the
Launchpad's `raw_dataset.source`), or the settings default ($PRUNE_DATASET) before any run, and a run
it requests reads that same source.
"""

import json
import os

import dagster as dg

from prune_dagster import settings
from prune_dagster.core.data.fingerprint import diff, digest, fingerprint
from prune_dagster.defs.jobs import JOBS

SCHEDULE_CRON = settings.schedule_cron()
SENSOR_INTERVAL_S = settings.sensor_interval_s()


def build_automation(jobs: dict) -> list:
    """The schedule and the two sensors, targeting `jobs` (build_jobs' dict)."""
    return [make_schedule(jobs["prune_job"]), make_source_sensor(jobs["prune_job"]),
            make_new_samples_sensor(jobs["incremental_job"])]


def make_schedule(prune_job) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(name="daily_prune", job=prune_job, cron_schedule=SCHEDULE_CRON,
                                 description="Re-run the whole pruning graph on a schedule (PRUNE_SCHEDULE_CRON, "
                                             "default daily 03:00). Starts stopped; switch it on in the UI "
                                             "(Automation → daily_prune).",
                                 default_status=dg.DefaultScheduleStatus.STOPPED)


def source_spec(instance: dg.DagsterInstance | None) -> str:
    """The source the last raw_dataset materialization read, else the settings default."""
    event = instance.get_latest_materialization_event(dg.AssetKey("raw_dataset")) if instance else None
    materialization = event.asset_materialization if event is not None else None
    recorded = materialization.metadata.get("source_spec") if materialization is not None else None
    return str(recorded.value) if recorded is not None else settings.dataset()


def make_source_sensor(prune_job) -> dg.SensorDefinition:
    return dg.sensor(name="source_changed_sensor", job=prune_job, minimum_interval_seconds=SENSOR_INTERVAL_S,
                     default_status=dg.DefaultSensorStatus.RUNNING,
                     description="Starts prune_job when files in the source folder (or the .npz) are added, "
                                 "changed or removed.")(watch_source)


def watch_source(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """The source sensor's evaluation: a run request when the watched source's files changed."""
    spec = source_spec(context.instance)
    prints = fingerprint(spec)
    if prints is None:
        return dg.SkipReason(f"source {spec!r} is built in or missing: nothing on disk to watch")
    # The cursor remembers which source its files belong to: a run on another source starts afresh.
    old = json.loads(context.cursor) if context.cursor else None
    if old is not None and old.get("source") != spec:
        old = None
    cursor = json.dumps({"source": spec, "files": prints}, sort_keys=True)
    if old is None:
        # First look: remember the files; the current data is what a schedule or the user prunes.
        return dg.SensorResult(skip_reason=dg.SkipReason(f"recorded {len(prints)} files of {spec}"), cursor=cursor)
    changes = diff(old["files"], prints)
    if not any(changes.values()):
        return dg.SkipReason(f"no change in {len(prints)} files of {spec}")
    summary = {k: len(v) for k, v in changes.items()}
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=digest(prints),
                                    tags={"prune/trigger": "source_changed",
                                          "prune/changes": json.dumps(summary)},
                                    run_config={"ops": {"raw_dataset": {"config": {"source": spec}}}})],
        cursor=cursor,
    )


# A batch in $PRUNE_INCOMING: a folder (images, .txt files or .npy arrays) or one of these files.
BATCH_SUFFIXES = (".npz", ".csv", ".parquet", ".jsonl")


def incoming_folder() -> str:
    return settings.incoming()


def make_new_samples_sensor(incremental_job) -> dg.SensorDefinition:
    return dg.sensor(name="new_samples_sensor", job=incremental_job, minimum_interval_seconds=SENSOR_INTERVAL_S,
                     default_status=dg.DefaultSensorStatus.RUNNING,
                     description="Starts incremental_job for each new batch (an .npy, image or text folder, or an "
                                 ".npz / .csv / .parquet / .jsonl file) that appears in $PRUNE_INCOMING: new "
                                 "samples are checked against the last full prune's index.")(watch_incoming)


def watch_incoming(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """The new-samples sensor's evaluation: one run request per new batch in $PRUNE_INCOMING."""
    root = incoming_folder()
    if not root or not os.path.isdir(root):
        return dg.SkipReason("PRUNE_INCOMING is not set to a folder: no new batches to watch")
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    batches = sorted(e.name for e in os.scandir(root) if not e.name.startswith(".") and e.name not in seen
                     and (e.is_dir() or e.name.endswith(BATCH_SUFFIXES)))
    if not batches:
        return dg.SkipReason(f"no new batch in {root}")
    requests = [dg.RunRequest(run_key=name, tags={"prune/trigger": "new_samples", "prune/batch": name},
                              run_config={"ops": {"incremental_update": {"config": {
                                  "new_source": os.path.join(root, name)}}}})
                for name in batches]
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(sorted(seen | set(batches))))


prune_schedule, source_changed_sensor, new_samples_sensor = build_automation(JOBS)
