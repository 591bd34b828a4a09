"""Incremental pruning: decide a batch of new samples against an index of the pruned set.

A full prune looks at every sample; when 1% new samples arrive (the sensor case) most of that work
would be repeated to learn nothing new. `PruneIndex.build` freezes, once, what the cleaning steps of
the last full prune compared samples against; `PruneIndex.add` then decides only the new samples:

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
label_noise_removed the step's classifier fitted on (a bounded sample of) the    frozen model: see note
                    cleaned old set: removed when it predicts another class and gives
                    the given label < RECHECK_MIN_PROBABILITY
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

The index is a loop over `prune_dagster.core.pipeline.PIPELINE`: each step's module offers `freeze`
(what the index keeps for it) and `decide` (decide new samples against that), reading the step's
own parameters as the last prune recorded them; nothing here knows what a step does.
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
# for the full-resolution check); part of the asset's storage key.
INDEX_FORMAT = 3


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


@dataclass
class AddResult:
    kept_ids: np.ndarray  # new ids kept by every cleaning step
    removed: pd.DataFrame  # ledger rows for the new ids: id, step, reason, score
    needs_full_prune: list[str] = field(default_factory=list)  # why the index cannot decide (then nothing is)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class PruneIndex:
    params: dict[str, Params]  # every incremental step's recorded parameters
    frozen: dict[str, Any]  # what each enabled step's `freeze` kept
    build_seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(cls, dataset: Dataset, selection: Selection, mapper: Mapper = serial_map) -> PruneIndex:
        """Freeze what the last full prune's cleaning steps compared samples against. Costs about one
        pass of those steps (e.g. it recomputes the old near-duplicate groups and outlier threshold)."""
        steps = [step for step in pipeline.PIPELINE if step.incremental]
        params = {step.asset: recorded_params(selection, step) for step in steps}  # all settings first
        old = OldRun(dataset, selection)
        frozen: dict[str, Any] = {}
        seconds: dict[str, float] = {}
        for step in steps:
            if params[step.asset].enabled:
                start = time.perf_counter()
                old.step = step.asset
                frozen[step.asset] = step.freeze(old, params[step.asset], mapper)
                seconds[step.asset] = time.perf_counter() - start
        return cls(params=params, frozen=frozen, build_seconds=seconds)

    def of(self, step: str) -> Any:
        """What the index keeps for `step` (KeyError when it was disabled in the last prune)."""
        return self.frozen[step]

    def add(self, ids: np.ndarray, images: np.ndarray, labels: np.ndarray,
            mapper: Mapper = serial_map) -> AddResult:
        """Decide the new samples (none of them may already be in the index), step by step in the
        pipeline's order; the first step that cannot decide without a full prune stops it."""
        batch = NewBatch(ids, images, labels)
        seconds: dict[str, float] = {}
        for step in pipeline.PIPELINE:
            if step.asset not in self.frozen:  # not incremental, or disabled in the last prune
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
        state = {"params": self.params, "frozen": frozen, "arrays": arrays, "build_seconds": self.build_seconds}
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
        return cls(params=state["params"], frozen=frozen, build_seconds=state["build_seconds"])


def _split_arrays(state: Any, folder: Path, step: str) -> tuple[Any, list[str]]:
    """Save the large array fields of a step's frozen dataclass as .npy; return it without them."""
    if not is_dataclass(state) or isinstance(state, type):
        return state, []
    big = [f.name for f in fields(state)
           if isinstance(getattr(state, f.name), np.ndarray) and getattr(state, f.name).nbytes >= MMAP_BYTES]
    for name in big:
        np.save(folder / f"{step}.{name}.npy", np.asarray(getattr(state, name)))
    return (replace(state, **{name: None for name in big}) if big else state), big
