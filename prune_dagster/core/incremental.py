"""Incremental pruning: decide a batch of new samples against an index of the pruned set.

A full prune looks at every sample; when 1% new samples arrive (the sensor case) most of that work
would be repeated to learn nothing new. Each step's `run` leaves in the Selection what it compared
samples against (`StepResult.state`); `PruneIndex.build` gathers those states, recomputing nothing, and
`PruneIndex.add` then decides only the new samples:

==================  ===========================================================  ======================
step                new sample is checked against                                same answer as a full
                                                                                 prune?
==================  ===========================================================  ======================
validated           its own pixels                                               yes
exact_deduplicated  128-bit content hashes of every old training sample and      yes
                    of the test split
near_deduplicated   the old step input's brightness-normalised views, same       yes, for the radius
                    PCA basis and radius (exact radius search, both directions)  of the last prune
outliers_removed    the old step's reference sample and threshold                yes, for that reference
label_noise_removed the representation's fold models (none saw the new sample)  frozen models: see
                    against the step's per-class confident thresholds and its   core/steps/label_noise.py
                    self-confidence cut; or, with a classifier on pixels, its
                    re-check model and rule
==================  ===========================================================  ======================

"Same answer" holds as long as the new samples change no decision about an old sample. When they
would, `add` says so in `needs_full_prune` and decides nothing: a new copy of an old image with a
different label (a full prune would drop the old one as a label conflict), a new sample that joins
two old near-duplicate groups (a full prune would drop one old survivor), a class ratio pushed past
`max_imbalance` or an earlier run that synthesised samples (rebalancing would change), a new value
in a pixel the feature mask dropped as constant. Score-based pruning ranks the whole set; new clean
samples are kept and re-ranked at the next full prune (the retained fraction drifts by at most the
new share until then). Only `keep="first"` near-duplicate survivors are incremental (`most_typical`
moves with every new member).

The index is a loop over `prune_dagster.core.pipeline.PIPELINE`: each step's module offers `decide`
(decide new samples against the state its run left) and optionally `freeze` (finish that state
cheaply), reading the step's own parameters as the last prune recorded them; nothing here knows what
a step does.
"""

from __future__ import annotations

import os
import pickle
import shutil
import time
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from prune_dagster.core import pipeline
from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.errors import ConfigError
from prune_dagster.core.infra.parallel import Mapper, serial_map
from prune_dagster.core.ledger import Selection, removed_frame
from prune_dagster.core.params import Params
from prune_dagster.core.steps.frozen import NeedsFullPrune, NewBatch, OldRun

# Arrays of a step's frozen state at least this large are saved as .npy and memory-mapped on load.
MMAP_BYTES = 1 << 20
# The layout `save` writes (2: one frozen state per pipeline step; 3: near duplicates keep their pixels
# for the full-resolution check; 4: states left by the steps' runs, the label step's from the fold
# models); part of the asset's storage key.
INDEX_FORMAT = 4


def recorded_params(selection: Selection, step: pipeline.Step) -> Params:
    """The step's parameters as the last prune recorded them (validated again)."""
    record = selection.record(step.asset)
    if record is None or step.params is None:
        raise ConfigError(f"the pruned selection has no record of step {step.asset!r}; run the full prune first")
    try:
        return step.params.model_validate(record.config)
    except ValidationError as exc:
        raise ConfigError(f"the recorded settings of {step.asset} do not fit {step.params.__name__}: "
                          f"{exc.errors()[0]['msg']} ({exc.errors()[0]['loc']}); run the full prune again") from None


def step_state(selection: Selection, step: pipeline.Step) -> Any:
    """What the step's `run` left for the index (None: nothing to decide); a ConfigError saying why when
    its settings cannot be decided incrementally."""
    state = selection.states.get(step.asset)
    if isinstance(state, str):
        if state:
            raise ConfigError(state)
        return None
    return state


@dataclass
class AddResult:
    kept_ids: np.ndarray  # new ids kept by every cleaning step
    removed: pd.DataFrame  # ledger rows for the new ids: id, step, reason, score
    needs_full_prune: list[str] = field(default_factory=list)  # why the index cannot decide (then nothing is)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class PruneIndex:
    params: dict[str, Params]  # every incremental step's recorded parameters
    frozen: dict[str, Any]  # what each enabled step left for the index (after its `freeze`)
    build_seconds: dict[str, float] = field(default_factory=dict)
    steps: tuple[str, ...] = ()  # the incremental steps, in pipeline order

    @classmethod
    def build(cls, dataset: Dataset, selection: Selection, representation: Any = None,
              steps: tuple[pipeline.Step, ...] = pipeline.PIPELINE) -> PruneIndex:
        """Gather what the last full prune's steps left for the index (`StepResult.state`, kept in the
        Selection): nothing is recomputed; a step's `freeze` only looks up what its state refers to
        (e.g. stored pixels by position, the representation's fold models)."""
        incremental = [step for step in steps if step.incremental]
        params = {step.asset: recorded_params(selection, step) for step in incremental}  # all settings first
        old = OldRun(dataset, selection, representation)
        frozen: dict[str, Any] = {}
        seconds: dict[str, float] = {}
        for step in incremental:
            if not params[step.asset].enabled:
                continue
            state = step_state(selection, step)
            if state is None:
                continue
            start = time.perf_counter()
            frozen[step.asset] = step.freeze(state, old) if step.freeze is not None else state
            seconds[step.asset] = time.perf_counter() - start
        return cls(params=params, frozen=frozen, build_seconds=seconds, steps=tuple(s.asset for s in incremental))

    def of(self, step: str) -> Any:
        """What the index keeps for `step` (KeyError when it was disabled in the last prune)."""
        return self.frozen[step]

    def add(self, ids: np.ndarray, content: Any, labels: np.ndarray, mapper: Mapper = serial_map,
            steps: tuple[pipeline.Step, ...] = pipeline.PIPELINE) -> AddResult:
        """Decide the new samples (none of them may already be in the index; `content`: their images,
        table rows or texts), step by step in the pipeline's order; the first step that cannot decide
        without a full prune stops it."""
        batch = NewBatch(ids, content, labels)
        seconds: dict[str, float] = {}
        for step in steps:
            if step.asset not in self.frozen:  # not incremental, disabled, or nothing to decide
                continue
            batch.step = step.asset
            start = time.perf_counter()
            try:
                step.decide(self.frozen[step.asset], self.params[step.asset], batch, mapper)
            except NeedsFullPrune as why:
                return AddResult(kept_ids=np.zeros(0, dtype=object), removed=removed_frame().assign(step=""),
                                 needs_full_prune=[str(why)], seconds=seconds)
            finally:
                seconds[step.asset] = time.perf_counter() - start
        return AddResult(kept_ids=batch.ids[batch.alive], removed=batch.removed(), seconds=seconds)

    def save(self, folder: Path) -> Path:
        """Write the index to `folder` (large arrays as memory-mappable .npy files, the rest pickled),
        atomically: a folder that exists is complete."""
        folder = Path(folder)
        if folder.exists():
            return folder
        tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        frozen, arrays = {}, {}
        for step, state in self.frozen.items():
            frozen[step], arrays[step] = _split_arrays(state, tmp, step)
        state = {"params": self.params, "frozen": frozen, "arrays": arrays, "build_seconds": self.build_seconds,
                 "steps": self.steps}
        (tmp / "index.pkl").write_bytes(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        try:
            os.replace(tmp, folder)
        except OSError:  # another run wrote the same index first
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder: Path) -> PruneIndex:
        """Read an index `save` wrote (pickle: only ever files this project wrote)."""
        folder = Path(folder)
        state = pickle.loads((folder / "index.pkl").read_bytes())
        frozen = {step: replace(value, **{name: np.load(folder / f"{step}.{name}.npy", mmap_mode="r")
                                          for name in state["arrays"][step]}) if state["arrays"][step] else value
                  for step, value in state["frozen"].items()}
        return cls(params=state["params"], frozen=frozen, build_seconds=state["build_seconds"],
                   steps=tuple(state.get("steps", ())))


def _split_arrays(state: Any, folder: Path, step: str) -> tuple[Any, list[str]]:
    """Save the large array fields of a step's frozen dataclass as .npy; return it without them."""
    if not is_dataclass(state) or isinstance(state, type):
        return state, []
    big = [f.name for f in fields(state)
           if isinstance(getattr(state, f.name), np.ndarray) and getattr(state, f.name).nbytes >= MMAP_BYTES]
    for name in big:
        np.save(folder / f"{step}.{name}.npy", np.asarray(getattr(state, name)))
    return (replace(state, **{name: None for name in big}) if big else state), big
