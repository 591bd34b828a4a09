"""The same graph under Dagster's default multiprocess executor, for benchmarks/executor_overhead.py only."""

import dagster as dg

import prune_dagster.definitions as project
from prune_dagster.defs.jobs import PRUNE_GRAPH

prune_job_multiprocess = dg.define_asset_job(
    "prune_job_multiprocess", selection=dg.AssetSelection.assets(*PRUNE_GRAPH), executor_def=dg.multiprocess_executor
)

defs = dg.Definitions.merge(project.defs, dg.Definitions(jobs=[prune_job_multiprocess]))
