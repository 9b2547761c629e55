"""GPU speed where it is cheap: bf16 autocast and channels-last are Recipe fields, on in the `paper` profile on a
GPU only, and they leave the loss as it was within bfloat16's precision (checked on the CPU, which has bf16
autocast too)."""

from dataclasses import replace

import pytest
import torch

from kdrepro.arms import Arm, Net, Stage
from kdrepro.data import Split
from kdrepro.experiment import CacheKeys
from kdrepro.models import build
from kdrepro.objectives.response import ResponseKD
from kdrepro.objectives.task import CrossEntropy
from kdrepro.schemes import Teacher
from kdrepro.seeds import seeded
from kdrepro.speed import fast, for_device
from kdrepro.train import Recipe, fit

STUDENT = {"family": "resnet", "depth": 8, "channels": (8, 8, 16, 32)}
TEACHER = {"family": "resnet", "depth": 14, "channels": (8, 8, 16, 32)}


def images(n: int = 32) -> Split:
    g = torch.Generator().manual_seed(0)
    return Split(torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g))


def network(architecture: dict, name: str) -> torch.nn.Module:
    with seeded(0, "init", name):
        return build(architecture, 10, 3, (3, 16, 16))


def first_step(recipe: Recipe) -> dict[str, float]:
    """The loss and its terms at the first step of the KD loop (one batch: the epoch's mean is that step's)."""
    train = images()
    teacher = Teacher(network(TEACHER, "teacher").eval(), train.x)
    history = fit(network(STUDENT, "student"), ResponseKD(4.0, 0.1), train, recipe, seed=0, teacher=teacher,
                  progress_seconds=None)
    return {"loss": history.loss[0], **{term: values[0] for term, values in history.terms.items()}}


def test_bf16_autocast_and_channels_last_leave_the_kd_loss_within_bfloat16_precision():
    exact = first_step(Recipe(epochs=1, batch_size=32))
    quick = first_step(Recipe(epochs=1, batch_size=32, bf16=True, channels_last=True))
    assert quick.keys() == exact.keys() == {"loss", "ce", "kd"}
    # bfloat16 keeps 8 bits of mantissa: 0.4% per rounding; the loss goes through a few dozen layers
    assert quick == pytest.approx(exact, rel=0.02)
    assert quick != exact                                   # autocast did run in bfloat16


def test_channels_last_alone_computes_the_same_loss():
    exact = first_step(Recipe(epochs=1, batch_size=32))
    assert first_step(Recipe(epochs=1, batch_size=32, channels_last=True)) == pytest.approx(exact, rel=1e-5)


def arm_with_everything() -> Arm:
    teacher = Arm("teacher", Net(TEACHER, "teacher"), CrossEntropy(), Recipe(epochs=4))
    own = Recipe(epochs=2, optimizer="adam", lr=1e-3)
    return Arm("student", Net(STUDENT), (Stage(CrossEntropy(), 2, recipe=own), Stage(ResponseKD(4.0, 0.1), 4)),
               Recipe(epochs=4), teacher)


def test_fast_switches_on_every_recipe_of_an_arm_its_stages_and_its_teachers():
    arm = fast(arm_with_everything())
    recipes = [arm.recipe, arm.objective[0].recipe, arm.teacher.recipe]
    assert all(recipe.bf16 and recipe.channels_last for recipe in recipes)
    assert arm.objective[1].recipe is None                  # a stage on the arm's recipe keeps it
    assert replace(arm.recipe, bf16=False, channels_last=False) == arm_with_everything().recipe


@pytest.mark.parametrize("asked, profile, device, on", [
    ("1", "paper", "cuda", True), ("1", "paper", "cpu", False), ("1", "smoke", "cuda", False),
    ("1", "cpu", "cuda", False), ("0", "paper", "cuda", False), (None, "paper", "cuda", False)])
def test_speed_is_on_only_when_asked_in_the_paper_profile_on_a_gpu(asked, profile, device, on, monkeypatch):
    if asked is None:
        monkeypatch.delenv("KDREPRO_BF16", raising=False)
    else:
        monkeypatch.setenv("KDREPRO_BF16", asked)
    arm = arm_with_everything()
    assert (for_device(arm, profile, device) == fast(arm)) is on
    assert (for_device(arm, profile, device) == arm) is not on


def test_a_bf16_switch_that_is_neither_0_nor_1_is_refused_with_the_variable_named(monkeypatch):
    monkeypatch.setenv("KDREPRO_BF16", "yes")
    with pytest.raises(ValueError, match="KDREPRO_BF16='yes'"):
        for_device(arm_with_everything(), "paper", "cuda")


def test_the_cache_key_says_whether_a_run_was_trained_fast(monkeypatch):
    monkeypatch.setenv("KDREPRO_BF16", "1")
    from kdrepro.data import Data
    split = images(4)
    data = Data("toy", split, split, split, tuple(map(str, range(10))))
    arm = arm_with_everything()
    on_gpu = CacheKeys("toy", "paper", "cuda").model(arm, data)[1]["arm"]
    on_cpu = CacheKeys("toy", "paper", "cpu").model(arm, data)[1]["arm"]
    assert on_gpu["recipe"]["bf16"] is True and on_cpu["recipe"]["bf16"] is False
