"""One module per pruning step; each exposes a pure function returning a StepResult."""
