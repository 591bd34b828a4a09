"""prune-dagster: automated dataset pruning as a Dagster asset graph."""

__version__ = "0.1.0"
