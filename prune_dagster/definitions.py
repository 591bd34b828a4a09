"""The Dagster Definitions: `dagster dev -m prune_dagster.definitions` or `-w workspace.yaml`."""

from __future__ import annotations

import dagster as dg

from prune_dagster.defs.assets import (
    cleaning,
    incremental,
    ingest,
    properties,
    representation,
    selection,
    shaping,
    sweep,
    training,
)
from prune_dagster.defs.automation import new_samples_sensor, prune_schedule, source_changed_sensor
from prune_dagster.defs.checks import CHECKS
from prune_dagster.defs.config import check_bounds
from prune_dagster.defs.engine import ComputeEngine
from prune_dagster.defs.io import RunScopedIOManager
from prune_dagster.defs.jobs import incremental_job, prune_job, sweep_job, train_job
from prune_dagster.defs.resources import MlflowResource, OutputStore

defs = dg.Definitions(
    # Every asset's config is checked (bounds, cross-field rules) before a run starts: defs/config.py.
    assets=check_bounds(dg.load_assets_from_modules([ingest, properties, representation, cleaning, shaping, selection,
                                                      training, sweep, incremental])),
    asset_checks=CHECKS,
    jobs=[prune_job, train_job, sweep_job, incremental_job],
    schedules=[prune_schedule],
    sensors=[source_changed_sensor, new_samples_sensor],
    resources={"mlflow": MlflowResource(), "output_store": OutputStore(), "io_manager": RunScopedIOManager(),
               "engine": ComputeEngine()},
    executor=dg.in_process_executor,
)
