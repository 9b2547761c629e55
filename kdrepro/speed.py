"""GPU speed where it is cheap: bfloat16 autocast and channels-last memory, switched on in every recipe of an arm.

Both are `Recipe` fields, so they belong to an arm's cache key: a run trained with them is never served as one
trained without. They are off unless asked for: `KDREPRO_BF16=1` switches them on for the `paper` profile on a GPU
(decided in one place, `experiment.CacheKeys.arm`, for the notebooks and `python -m kdrepro work` alike); the
`smoke` and `cpu` profiles never use them.

Why off by default: measured by `make gpu-check` on one H200 (results/gpu/), the KD loop of three CIFAR pairs
(ResNet-32x4 -> ResNet-8x4, WRN-40-2 -> WRN-16-2, ResNet-110 -> ResNet-20) at batches of 128 and 512 ran at 0.78 to
1.22 times its float32 speed with both on (median 0.90): networks this small are bound by kernel launches, not by
arithmetic, and autocast adds casts. Larger networks (ResNet-50 at 224 px, RKD's `paper` profile) may gain.

Channels-last stays off on a CPU too: at one torch thread it trained the `cpu` profiles' convolutional students only
1.04 to 1.17 times faster (median of five repeats), and with it RKD's `smoke` run aborted in its first student's
backward pass with a corrupted heap ("corrupted size vs. prev_size", torch 2.14.1), a fault that could as well
corrupt numbers without a crash.
"""

from __future__ import annotations

import os
from dataclasses import replace

from kdrepro.arms import Arm
from kdrepro.train import Recipe

FAST_ON_GPU = ("paper",)   # the profiles that may train fast on a GPU, when KDREPRO_BF16=1


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
    asked = os.environ.get("KDREPRO_BF16", "0")
    if asked not in ("0", "1"):
        raise ValueError(f"KDREPRO_BF16={asked!r}: set it to 1 (bf16 autocast and channels-last for the paper "
                         "profile on a GPU) or 0 (off, the default)")
    asked = asked == "1"
    return fast(arm) if asked and device_type == "cuda" and profile in FAST_ON_GPU else arm
