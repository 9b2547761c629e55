"""Speed where it is cheap: on a GPU, bfloat16 autocast and channels-last memory; on a CPU, channels-last alone;
switched on in every recipe of an arm.

Both are `Recipe` fields, so they belong to an arm's cache key: a run trained with them is never served as one
trained without. On a GPU they are off unless asked for: `KDREPRO_BF16=1` switches them on for the `paper` profile
(decided in one place, `experiment.CacheKeys.arm`, for the notebooks and `python -m kdrepro work` alike); the
`smoke` and `cpu` profiles never use bf16.

Why off by default: measured by `make gpu-check` on one H200 (results/gpu/), the KD loop of three CIFAR pairs
(ResNet-32x4 -> ResNet-8x4, WRN-40-2 -> WRN-16-2, ResNet-110 -> ResNet-20) at batches of 128 and 512 ran at 0.78 to
1.22 times its float32 speed with both on (median 0.90): networks this small are bound by kernel launches, not by
arithmetic, and autocast adds casts. Larger networks (ResNet-50 at 224 px, RKD's `paper` profile) may gain.

On a CPU channels-last alone is a small gain, so every profile trains with it there. Measured on two cores at one
torch thread (the `cpu` profile's), a few epochs of a `cpu` student, the median of five repeats: FitNets' thin
student 3.37 -> 2.89 s (1.17x), DML's ResNet 1.76 -> 1.58 s (1.11x), AT's WRN 2.21 -> 2.04 s (1.08x), FSP's ResNet
2.37 -> 2.24 s (1.06x), BAN's 1.79 -> 1.72 s (1.04x), RKD's embedding network alike (1.66 -> 1.68 s); networks
without convolutions (Hinton's MLPs, Seq-KD's LSTMs) are untouched by it.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Callable

from kdrepro.arms import Arm
from kdrepro.train import Recipe

FAST_ON_GPU = ("paper",)   # the profiles that may train fast on a GPU, when KDREPRO_BF16=1


def fast_recipe(recipe: Recipe) -> Recipe:
    return replace(recipe, bf16=True, channels_last=True)


def with_recipes(arm: Arm, change: Callable[[Recipe], Recipe]) -> Arm:
    """`arm` with `change` applied to its recipe, to its stages' own recipes and to its teacher's."""
    objective = arm.objective if not isinstance(arm.objective, tuple) else tuple(
        replace(stage, recipe=None if stage.recipe is None else change(stage.recipe)) for stage in arm.objective)
    return replace(arm, recipe=change(arm.recipe), objective=objective,
                   teacher=None if arm.teacher is None else with_recipes(arm.teacher, change))


def fast(arm: Arm) -> Arm:
    """`arm` with bf16 autocast and channels-last (`fast_recipe`)."""
    return with_recipes(arm, fast_recipe)


def channels_last(arm: Arm) -> Arm:
    """`arm` with channels-last memory: a CPU's convolutions run faster in it."""
    return with_recipes(arm, lambda recipe: replace(recipe, channels_last=True))


def for_device(arm: Arm, profile: str, device_type: str) -> Arm:
    """The arm as it trains on `device_type` ("cpu", "cuda") in `profile`."""
    asked = os.environ.get("KDREPRO_BF16", "0")
    if asked not in ("0", "1"):
        raise ValueError(f"KDREPRO_BF16={asked!r}: set it to 1 (bf16 autocast and channels-last for the paper "
                         "profile on a GPU) or 0 (off, the default)")
    if device_type == "cpu":
        return channels_last(arm)
    return fast(arm) if asked == "1" and device_type == "cuda" and profile in FAST_ON_GPU else arm
