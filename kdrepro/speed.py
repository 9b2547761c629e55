"""GPU speed where it is cheap: bfloat16 autocast and channels-last memory, switched on in every recipe of an arm.

Both are `Recipe` fields, so they belong to an arm's cache key: a run trained with them is never served as one
trained without. They are on for the profiles of `FAST_ON_GPU` when the device is a GPU (decided in one place,
`experiment.CacheKeys.arm`, for the notebooks and `python -m kdrepro work` alike), off everywhere else, so the
`cpu` results are computed as before.
"""

from __future__ import annotations

from dataclasses import replace

from kdrepro.arms import Arm
from kdrepro.train import Recipe

FAST_ON_GPU = ("paper",)


def fast_recipe(recipe: Recipe) -> Recipe:
    return replace(recipe, bf16=True, channels_last=True)


def fast(arm: Arm) -> Arm:
    """`arm` with bf16 autocast and channels-last in its recipe, in its stages' own recipes and in its teacher's."""
    objective = arm.objective if not isinstance(arm.objective, tuple) else tuple(
        replace(stage, recipe=None if stage.recipe is None else fast_recipe(stage.recipe)) for stage in arm.objective)
    return replace(arm, recipe=fast_recipe(arm.recipe), objective=objective,
                   teacher=None if arm.teacher is None else fast(arm.teacher))


def for_device(arm: Arm, profile: str, device_type: str) -> Arm:
    """The arm as it trains on `device_type` ("cpu", "cuda") in `profile`."""
    return fast(arm) if device_type == "cuda" and profile in FAST_ON_GPU else arm
