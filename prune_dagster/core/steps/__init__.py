"""One module per pruning step: its settings (`XParams`), a pure function returning a StepResult, what
its ledger scores mean (`SCORE_MEANING`) and, for the incremental index, `freeze` / `decide`
(see `frozen.py`). `prune_dagster.core.pipeline` lists them in order."""
