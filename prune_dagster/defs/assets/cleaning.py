"""Stage `cleaning`: exact duplicates, near duplicates, outliers, label noise.

Each step's settings are its core parameter model (`prune_dagster.core.steps.*.XParams`); the
Config classes here are made from them, and each asset converts its config back with `to_params`.
"""


import dagster as dg

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.embedding.pca import flatten, pca_embed
from prune_dagster.core.errors import ConfigError
from prune_dagster.core.ledger import Selection
from prune_dagster.core.steps.dedup import ExactDedupParams, content_hashes, find_exact_duplicates
from prune_dagster.core.steps.label_noise import LabelNoiseParams, find_label_issues, label_issues_from_probabilities
from prune_dagster.core.steps.near_dup import NearDedupParams, find_near_duplicates, near_duplicate_views
from prune_dagster.core.steps.outliers import OutlierParams, find_outliers
from prune_dagster.core.training.shared import SharedRepresentation
from prune_dagster.defs.assets.common import run_step
from prune_dagster.defs.config import dagster_config, to_params
from prune_dagster.defs.engine import ComputeEngine

ExactDedupConfig = dagster_config(ExactDedupParams)
NearDedupConfig = dagster_config(NearDedupParams)
OutlierConfig = dagster_config(OutlierParams)
LabelNoiseConfig = dagster_config(LabelNoiseParams)


# Its input is the step before it in core/pipeline.py: properties_checked (which passes `validated` through when off).
@dg.asset(group_name="cleaning", ins={"validated": dg.AssetIn("properties_checked")})
def exact_deduplicated(config: ExactDedupConfig, raw_dataset: Dataset, validated: Selection,
                       engine: ComputeEngine) -> dg.Output[Selection]:
    """Keeps one of each set of byte-identical images (content hash); label conflicts and copies of
    test images are removed and named as such in the ledger."""
    params = to_params(config, ExactDedupParams)

    def compute(ids, images, labels):
        test_hashes = None
        if params.check_test_leaks and len(validated.test_ids):
            test_images = raw_dataset.images[raw_dataset.index_of(validated.test_ids)]
            test_hashes = engine.supply(content_hashes)(test_images)
        return engine.supply(find_exact_duplicates)(ids, images, labels, test_hashes, params.conflict_policy)

    return run_step("exact_deduplicated", raw_dataset, validated, params, compute, engine=engine)


@dg.asset(group_name="cleaning")
def near_deduplicated(config: NearDedupConfig, raw_dataset: Dataset, exact_deduplicated: Selection,
                      representation: SharedRepresentation, engine: ComputeEngine) -> dg.Output[Selection]:
    """Groups images closer than the threshold (kNN radius graph + union-find) and keeps one per group.
    By default each image is compared as itself and as its one-pixel shifts, brightness-normalised, in
    PCA space, so shifted and re-exposed copies count as duplicates too; `embedding: representation`
    compares the shared representation's embeddings instead."""
    params = to_params(config, NearDedupParams)

    def compute(ids, images, labels):
        learned = comparison_embedding(representation, ids, params.embedding)
        if learned is not None:  # semantic closeness: no pixel check
            return engine.supply(find_near_duplicates)(ids, learned[None], labels, params.threshold, params.keep)
        views = engine.supply(near_duplicate_views)(images, params.n_components, params.seed)
        return engine.supply(find_near_duplicates)(ids, views, labels, params.threshold, params.keep, images=images)

    return run_step("near_deduplicated", raw_dataset, exact_deduplicated, params, compute, engine=engine,
                    extra_metadata={"embedding": params.embedding})


@dg.asset(group_name="cleaning")
def outliers_removed(config: OutlierConfig, raw_dataset: Dataset, near_deduplicated: Selection,
                     representation: SharedRepresentation, engine: ComputeEngine) -> dg.Output[Selection]:
    """Removes images far from the rest of the data: by default the mean distance to the 20 nearest
    neighbours in a PCA embedding of the pixels (or the shared representation's embeddings), above an
    automatic robust threshold (IsolationForest and LOF are options)."""
    params = to_params(config, OutlierParams)

    def compute(ids, images, labels):
        emb = comparison_embedding(representation, ids, params.embedding)
        if emb is None:
            emb = engine.supply(pca_embed)(images, params.n_components, params.seed)
        return engine.supply(find_outliers)(ids, emb, params.method, params.contamination, params.z_threshold,
                                            params.seed)

    return run_step("outliers_removed", raw_dataset, near_deduplicated, params, compute, engine=engine,
                    extra_metadata={"embedding": params.embedding})


@dg.asset(group_name="cleaning")
def label_noise_removed(config: LabelNoiseConfig, raw_dataset: Dataset, outliers_removed: Selection,
                        representation: SharedRepresentation, engine: ComputeEngine) -> dg.Output[Selection]:
    """Removes samples whose label confident learning (cleanlab) finds wrong, from out-of-fold
    predicted probabilities: the shared representation's CNN probabilities, never flagging far beyond
    the estimated noise rate, or a classifier fitted here."""
    params = to_params(config, LabelNoiseParams)

    def compute(ids, images, labels):
        probs = representation.probs_of(ids) if params.probabilities == "representation" else None
        if probs is not None:
            return label_issues_from_probabilities(ids, labels, probs, params)
        features = representation.embeddings_of(ids) if representation.features == "provided" else None
        result = engine.supply(find_label_issues)(ids, flatten(images) if features is None else features, labels,
                                                  params.classifier, params.folds, params.filter_by, params.seed)
        on = "provided embeddings" if features is not None else "pixels"
        result.metadata["probabilities"] = f"classifier on {on}"
        return result

    return run_step("label_noise_removed", raw_dataset, outliers_removed, params, compute, engine=engine)


def comparison_embedding(representation: SharedRepresentation, ids, embedding: str):
    """The representation's embeddings of `ids` when a step asks for them (None: compare pixels). A step
    set to `representation` on a representation without embeddings (features=pixels) is a setting error."""
    if embedding != "representation":
        return None
    emb = representation.embeddings_of(ids)
    if emb is None:
        raise ConfigError("embedding='representation' needs representation.features 'learned' or 'provided' "
                          f"(this run's is {representation.features!r})")
    return emb
