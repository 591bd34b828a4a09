"""The Dagster Definitions: `dagster dev -m prune_dagster.definitions` or `-w workspace.yaml`.

Built from the pipeline declaration (`core/pipeline.py`): `build_definitions(steps)` makes every step's
asset and checks, the representation, the jobs, the incremental index, the sweep and the automation
for a list of steps (a test builds it for a pipeline with an extra step)."""

from __future__ import annotations

import dagster as dg

from prune_dagster.core import pipeline
from prune_dagster.defs.assets import ingest, training
from prune_dagster.defs.assets.incremental import incremental_assets
from prune_dagster.defs.assets.representation import representation_asset
from prune_dagster.defs.assets.steps import pipeline_assets, pipeline_checks
from prune_dagster.defs.assets.sweep import SWEEP_FRACTIONS, SWEEP_STRATEGIES, build_sweep_assets
from prune_dagster.defs.automation import build_automation
from prune_dagster.defs.config import check_bounds
from prune_dagster.defs.engine import ComputeEngine
from prune_dagster.defs.io import RunScopedIOManager
from prune_dagster.defs.jobs import build_jobs
from prune_dagster.defs.resources import MlflowResource, OutputStore


def build_definitions(steps: tuple[pipeline.Step, ...] = pipeline.PIPELINE) -> dg.Definitions:
    """Every asset, check, job, schedule and sensor for the pipeline `steps`, with the project's resources."""
    assets = [*dg.load_assets_from_modules([ingest, training]), *pipeline_assets(steps),
              representation_asset(), *incremental_assets(steps),
              *build_sweep_assets(SWEEP_STRATEGIES, SWEEP_FRACTIONS, steps)]
    jobs = build_jobs(steps)
    automation = build_automation(jobs)
    return dg.Definitions(
        # Every asset's config is checked (bounds, cross-field rules) before a run starts: defs/config.py.
        assets=check_bounds(assets),
        asset_checks=pipeline_checks(steps),
        jobs=list(jobs.values()),
        schedules=[a for a in automation if isinstance(a, dg.ScheduleDefinition)],
        sensors=[a for a in automation if isinstance(a, dg.SensorDefinition)],
        resources={"mlflow": MlflowResource(), "output_store": OutputStore(), "io_manager": RunScopedIOManager(),
                   "engine": ComputeEngine()},
        executor=dg.in_process_executor,
    )


defs = build_definitions()
