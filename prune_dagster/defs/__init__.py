"""Dagster wiring only: assets, checks, jobs, schedules, sensors, resources."""
