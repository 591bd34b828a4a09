"""Stage `cleaning`, first step: image-property checks (dark, light, low contrast, blurry, low
information, odd size or aspect, grey in colour), right after `validated` (core/steps/image_properties.py)."""


import dagster as dg
import numpy as np

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.ledger import Selection, StepResult
from prune_dagster.core.steps.image_properties import PropertyStepParams, find_property_issues
from prune_dagster.defs.assets.common import run_step
from prune_dagster.defs.config import dagster_config, to_params
from prune_dagster.defs.engine import ComputeEngine

PropertyConfig = dagster_config(PropertyStepParams)


@dg.asset(group_name="cleaning")
def properties_checked(config: PropertyConfig, raw_dataset: Dataset, validated: Selection,
                       engine: ComputeEngine) -> dg.Output[Selection]:
    """Removes images that are robust outliers (median ± k·MAD) on brightness, contrast, sharpness,
    entropy, colourfulness, or the original size or aspect ratio of the file; the ledger names the
    check and its robust z. Off by default (see PropertyStepParams). Size and aspect are judged where
    the source recorded each file's size before resizing (an image folder); array sources skip them."""
    params = to_params(config, PropertyStepParams)
    sizes = raw_dataset.original_sizes

    def compute(ids: np.ndarray, images: np.ndarray, labels: np.ndarray) -> StepResult:
        kept_sizes = None if sizes is None else np.asarray(sizes)[raw_dataset.index_of(ids)]
        return engine.supply(find_property_issues)(ids, images, params, original_sizes=kept_sizes)

    return run_step("properties_checked", raw_dataset, validated, params, compute, engine=engine)
