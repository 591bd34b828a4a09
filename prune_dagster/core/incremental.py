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
"""

from __future__ import annotations

import os
import pickle
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.neighbors import NearestNeighbors

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.embedding.neighbors import radius_pairs
from prune_dagster.core.embedding.pca import fit_pca, project
from prune_dagster.core.errors import ConfigError
from prune_dagster.core.infra.parallel import Mapper, serial_map
from prune_dagster.core.ledger import Selection, removed_frame
from prune_dagster.core.steps.dedup import _hash_keys, content_hashes
from prune_dagster.core.steps.label_noise import EXACT_MAX_ROWS, FIT_ROWS, RECHECK_MIN_PROBABILITY, _classifier
from prune_dagster.core.steps.near_dup import fit_views_basis, median_nn_distance, project_views
from prune_dagster.core.steps.outliers import anomaly_scores, reference_positions, robust_threshold
from prune_dagster.core.steps.validate import pixel_checks

STEPS = ("validated", "exact_deduplicated", "near_deduplicated", "outliers_removed", "label_noise_removed",
         "class_balanced", "features_selected")


def _config(selection: Selection, step: str) -> dict[str, Any]:
    for record in selection.history:
        if record["step"] == step:
            return dict(record["config"])
    raise ConfigError(f"the pruned selection has no record of step {step!r}; run the full prune first")


def _input_ids(selection: Selection, step: str) -> np.ndarray:
    """Ids that entered `step`: kept at the end, or removed by this or a later step."""
    later = STEPS[STEPS.index(step):] + ("pruned_dataset",)
    removed = selection.ledger.loc[selection.ledger["step"].isin(later), "id"].to_numpy(dtype=object)
    return np.concatenate([np.asarray(selection.kept_ids, dtype=object), removed])


def _sorted_positions(dataset: Dataset, ids: np.ndarray) -> np.ndarray:
    return np.sort(dataset.index_of(ids))


@dataclass
class AddResult:
    kept_ids: np.ndarray  # new ids kept by every cleaning step
    removed: pd.DataFrame  # ledger rows for the new ids: id, step, reason, score
    needs_full_prune: list[str] = field(default_factory=list)  # why the index cannot decide (then nothing is)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class PruneIndex:
    config: dict[str, dict[str, Any]]
    hash_labels: pd.Series  # S16 content hash → label of the old training samples with it (-1: they disagree)
    test_keys: pd.Index
    near_basis: Any
    near_radius: float
    near_views: np.ndarray  # (V, n_near, k) views of the old near-duplicate step input, in dataset order
    near_comp: np.ndarray  # old near-duplicate component of each row of near_views
    near_comp_label: np.ndarray  # label of each old component's survivor
    outlier_basis: Any
    outlier_reference: np.ndarray
    outlier_threshold: float | None
    outlier_k: int
    label_model: Any
    class_counts: np.ndarray  # kept per class after cleaning (old)
    had_synthetic: bool
    mask_values: np.ndarray | None  # (H, W) value of each masked pixel (NaN where kept)
    build_seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(cls, dataset: Dataset, selection: Selection, mapper: Mapper = serial_map) -> PruneIndex:
        """Freeze what the last full prune's cleaning steps compared samples against. Costs about one
        pass of those steps (it recomputes the old near-duplicate groups and outlier threshold)."""
        cfg = {s: _config(selection, s) for s in STEPS}
        near_cfg, out_cfg, label_cfg = cfg["near_deduplicated"], cfg["outliers_removed"], cfg["label_noise_removed"]
        if near_cfg.get("enabled", True) and near_cfg.get("keep", "first") != "first":
            raise ConfigError("incremental pruning needs near_deduplicated.keep='first' (a 'most_typical' survivor "
                              "moves whenever a group gains a member)")
        seconds: dict[str, float] = {}
        t = time.perf_counter()
        exact_pos = _sorted_positions(dataset, _input_ids(selection, "exact_deduplicated"))
        keys = _hash_keys(content_hashes(dataset.images[exact_pos], mapper))
        by_key = pd.Series(dataset.labels[exact_pos]).groupby(keys)
        # one label per distinct content; -1 where old copies already disagreed (a label conflict)
        hash_labels = by_key.first().where(by_key.nunique() == 1, -1).astype(np.int64)
        test_pos = _sorted_positions(dataset, selection.test_ids)
        test_keys = pd.Index(_hash_keys(content_hashes(dataset.images[test_pos], mapper)))
        seconds["exact_deduplicated"] = time.perf_counter() - t

        t = time.perf_counter()
        near_pos = _sorted_positions(dataset, _input_ids(selection, "near_deduplicated"))
        near_images = dataset.images[near_pos]
        basis = fit_views_basis(near_images, near_cfg["n_components"], near_cfg["seed"])
        views = project_views(near_images, basis, mapper=mapper)
        del near_images
        radius = near_cfg["threshold"] * median_nn_distance(views[0])[0]
        n = views.shape[1]
        q, j, _ = radius_pairs(views.reshape(-1, views.shape[2]), views[0], radius, mapper)
        i = q % n
        graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
        _, comp = connected_components(graph, directed=False)
        first = pd.Series(np.arange(n)).groupby(comp).min().to_numpy()  # keep="first" survivor per group
        comp_label = dataset.labels[near_pos][first]
        seconds["near_deduplicated"] = time.perf_counter() - t

        t = time.perf_counter()
        out_pos = _sorted_positions(dataset, _input_ids(selection, "outliers_removed"))
        out_images = dataset.images[out_pos]
        out_basis = fit_pca(out_images, out_cfg["n_components"], out_cfg["seed"])
        emb = project(out_images, out_basis, mapper=mapper)
        del out_images
        ref = reference_positions(len(emb), seed=out_cfg["seed"])
        threshold = None
        if out_cfg.get("enabled", True) and out_cfg["method"] == "knn" and out_cfg.get("contamination", 0) == 0:
            threshold = robust_threshold(anomaly_scores(emb, "knn", out_cfg["seed"], mapper=mapper),
                                         out_cfg["z_threshold"])
        elif out_cfg.get("enabled", True) and out_cfg["method"] != "none":
            raise ConfigError(f"incremental pruning supports outliers_removed.method='knn' with the automatic "
                              f"threshold; this prune used {out_cfg['method']!r}, contamination "
                              f"{out_cfg.get('contamination')}")
        seconds["outliers_removed"] = time.perf_counter() - t

        t = time.perf_counter()
        clean_pos = _sorted_positions(dataset, _input_ids(selection, "class_balanced"))
        rng = np.random.default_rng(label_cfg["seed"])
        # the step's own choice: its classifier up to EXACT_MAX_ROWS samples, its scalable one above
        scale = len(clean_pos) > EXACT_MAX_ROWS
        cap = FIT_ROWS if scale else EXACT_MAX_ROWS
        fit_pos = clean_pos if len(clean_pos) <= cap else np.sort(rng.choice(clean_pos, cap, replace=False))
        model = None
        if label_cfg.get("enabled", True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                x = dataset.images[fit_pos].reshape(len(fit_pos), -1)
                model = _classifier(label_cfg["classifier"], label_cfg["seed"], scale, len(fit_pos))
                model.fit(x, dataset.labels[fit_pos])
        seconds["label_noise_removed"] = time.perf_counter() - t

        kept_pos = _sorted_positions(dataset, selection.kept_ids)
        counts = np.bincount(dataset.labels[clean_pos], minlength=dataset.n_classes)
        mask_values = None
        if selection.feature_mask is not None and not selection.feature_mask.all():
            first_row = np.asarray(dataset.images[kept_pos[:1]])[0].max(axis=-1)
            mask_values = np.where(selection.feature_mask, np.nan, first_row)
        return cls(config=cfg, hash_labels=hash_labels, test_keys=test_keys, near_basis=basis, near_radius=radius,
                   near_views=views, near_comp=comp, near_comp_label=comp_label, outlier_basis=out_basis,
                   outlier_reference=emb[ref], outlier_threshold=threshold,
                   outlier_k=max(1, min(20, len(ref) - 1)), label_model=model, class_counts=counts,
                   had_synthetic=selection.synthetic is not None and len(selection.synthetic.ids) > 0,
                   mask_values=mask_values, build_seconds=seconds)

    def add(self, ids: np.ndarray, images: np.ndarray, labels: np.ndarray,
            mapper: Mapper = serial_map) -> AddResult:
        """Decide the new samples (none of them may already be in the index)."""
        ids = np.asarray(ids, dtype=object)
        labels = np.asarray(labels, dtype=np.int64)
        removed: list[pd.DataFrame] = []
        alive = np.ones(len(ids), dtype=bool)
        seconds: dict[str, float] = {}

        def drop(step: str, where: np.ndarray, reason: Any, score: Any = np.nan) -> None:
            removed.append(removed_frame(ids[where], reason, score).assign(step=step))
            alive[where] = False

        def on(step: str) -> bool:
            return self.config[step].get("enabled", True)

        t = time.perf_counter()
        finite, blank = pixel_checks(np.arange(len(ids)), images)
        drop("validated", np.flatnonzero(~finite), "non_finite_pixels", 1.0)
        if self.config["validated"].get("drop_blank", True):
            drop("validated", np.flatnonzero(blank & alive), "blank_image", 1.0)
        seconds["validated"] = time.perf_counter() - t

        t = time.perf_counter()
        if on("exact_deduplicated"):
            live = np.flatnonzero(alive)
            keys = _hash_keys(content_hashes(images[live], mapper))
            frame = pd.DataFrame({"key": keys, "label": labels[live], "pos": live})
            if self.config["exact_deduplicated"].get("check_test_leaks", True):
                leak = pd.Index(keys).isin(self.test_keys)
                drop("exact_deduplicated", live[leak], "duplicate_of_test", 1.0)
                frame = frame[~leak]
            at = self.hash_labels.index.get_indexer(frame["key"].to_numpy())
            known = at >= 0
            old_label = self.hash_labels.to_numpy()[at[known]]
            same = old_label == frame["label"].to_numpy()[known]
            mixed_before = old_label < 0
            if (~same & ~mixed_before).any():
                return self._fallback(ids, "a new image is byte-identical to an old one with another label "
                                      "(a full prune would remove the old one as a label conflict)", seconds)
            pos_known = frame["pos"].to_numpy()[known]
            drop("exact_deduplicated", pos_known[same], "exact_duplicate", 1.0)
            drop("exact_deduplicated", pos_known[mixed_before], "label_conflict", 1.0)
            fresh = frame[~known]
            groups = fresh.groupby("key")
            n_labels = groups["label"].transform("nunique").to_numpy()
            first = groups["pos"].transform("min").to_numpy()
            pos = fresh["pos"].to_numpy()
            drop("exact_deduplicated", pos[n_labels > 1], "label_conflict", 1.0)
            drop("exact_deduplicated", pos[(n_labels == 1) & (pos != first)], "exact_duplicate", 1.0)
        seconds["exact_deduplicated"] = time.perf_counter() - t

        t = time.perf_counter()
        if on("near_deduplicated") and alive.any():
            live = np.flatnonzero(alive)
            new_views = project_views(images[live], self.near_basis, mapper=mapper)
            n_old, m = self.near_views.shape[1], len(live)
            # old x new, both directions: every old view against every new view, a link when one is view 0
            q, j, _ = radius_pairs(self.near_views.reshape(-1, self.near_views.shape[2]),
                                   new_views.reshape(-1, new_views.shape[2]), self.near_radius, mapper)
            link = (q // n_old == 0) | (j // m == 0)
            old_comp, new_of_old = self.near_comp[(q % n_old)[link]], (j % m)[link]
            q2, j2, _ = radius_pairs(new_views.reshape(-1, new_views.shape[2]), new_views[0], self.near_radius,
                                     mapper)
            n_old_comp = int(self.near_comp.max()) + 1 if n_old else 0
            # nodes: new samples 0..m-1, then old components m..m+n_old_comp-1
            rows = np.concatenate([q2 % m, new_of_old])
            cols = np.concatenate([j2, m + old_comp])
            graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(m + n_old_comp,) * 2)
            _, comp = connected_components(graph, directed=False)
            old_in = pd.Series(np.arange(n_old_comp))[np.isin(np.arange(n_old_comp), np.unique(old_comp))]
            touched = pd.Series(comp[m + old_in.to_numpy()]).value_counts()
            if (touched > 1).any():
                return self._fallback(ids, "a new sample joins two old near-duplicate groups (a full prune would "
                                      "keep only one of their survivors)", seconds)
            comp_new = comp[:m]
            owner = pd.Series(old_in.to_numpy(), index=comp[m + old_in.to_numpy()])  # component → old group
            has_old = pd.Index(owner.index).get_indexer(comp_new) >= 0
            survivor_label = np.where(has_old, self.near_comp_label[owner.reindex(comp_new).fillna(0).astype(int)],
                                      -1)
            first_new = pd.Series(np.arange(m)).groupby(comp_new).transform("min").to_numpy()
            gone = has_old | (first_new != np.arange(m))
            ref_label = np.where(has_old, survivor_label, labels[live][first_new])
            reason = np.where(labels[live] == ref_label, "near_duplicate", "near_duplicate_label_conflict")
            drop("near_deduplicated", live[gone], reason[gone].astype(object))
        seconds["near_deduplicated"] = time.perf_counter() - t

        t = time.perf_counter()
        if on("outliers_removed") and self.outlier_threshold is not None and alive.any():
            live = np.flatnonzero(alive)
            emb = project(images[live], self.outlier_basis, mapper=mapper)
            nn = NearestNeighbors(n_neighbors=self.outlier_k).fit(self.outlier_reference)
            scores = nn.kneighbors(emb)[0].mean(axis=1)
            out = scores > self.outlier_threshold
            drop("outliers_removed", live[out], f"outlier_{self.config['outliers_removed']['method']}", scores[out])
        seconds["outliers_removed"] = time.perf_counter() - t

        t = time.perf_counter()
        if self.label_model is not None and alive.any():
            live = np.flatnonzero(alive)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                probs = self.label_model.predict_proba(images[live].reshape(len(live), -1))
            column = {c: k for k, c in enumerate(self.label_model.classes_)}
            p_given = np.array([probs[r, column[c]] if c in column else 0.0 for r, c in enumerate(labels[live])])
            predicted = np.asarray(self.label_model.classes_)[probs.argmax(axis=1)]
            bad = (predicted != labels[live]) & (p_given < RECHECK_MIN_PROBABILITY)
            drop("label_noise_removed", live[bad], "label_issue", 1.0 - p_given[bad])
        seconds["label_noise_removed"] = time.perf_counter() - t

        counts = self.class_counts + np.bincount(labels[alive], minlength=len(self.class_counts))
        balance = self.config["class_balanced"]
        if on("class_balanced") and balance.get("sampler", "smote") != "none":
            present = counts[counts > 0]
            if self.had_synthetic or present.max() / present.min() > balance.get("max_imbalance", 2.0):
                return self._fallback(ids, "class rebalancing would change (the class ratio passes max_imbalance, "
                                      "or the last prune synthesised samples)", seconds)
        if self.mask_values is not None and alive.any():
            masked = ~np.isnan(self.mask_values)
            gray = np.asarray(images[alive]).max(axis=-1)
            if not np.all(gray[:, masked] == self.mask_values[masked]):
                return self._fallback(ids, "a pixel the feature mask dropped as constant varies in the new samples",
                                      seconds)
        ledger = pd.concat(removed, ignore_index=True)[["id", "step", "reason", "score"]] if removed else \
            removed_frame().assign(step="")[["id", "step", "reason", "score"]]
        return AddResult(kept_ids=ids[alive], removed=ledger, seconds=seconds)

    def save(self, folder: Path) -> Path:
        """Write the index to `folder` (views as a memory-mappable .npy, the rest pickled), atomically:
        a folder that exists is complete."""
        folder = Path(folder)
        if folder.exists():
            return folder
        tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        np.save(tmp / "near_views.npy", np.asarray(self.near_views))
        state = {k: v for k, v in self.__dict__.items() if k != "near_views"}
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
        return cls(near_views=np.load(folder / "near_views.npy", mmap_mode="r"), **state)

    @staticmethod
    def _fallback(ids: np.ndarray, why: str, seconds: dict[str, float]) -> AddResult:
        return AddResult(kept_ids=np.zeros(0, dtype=object), removed=removed_frame().assign(step=""),
                         needs_full_prune=[why], seconds=seconds)
