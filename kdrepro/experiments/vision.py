"""What the image-classification papers share: a teacher -> student pair on one dataset, its cached teacher, and
student arms run through the experiment's cache with the same recipe and seed pairing."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import pandas as pd
import torch
from torch import Tensor, nn

from kdrepro.data import Data, load_data
from kdrepro.experiment import Experiment, mean_std
from kdrepro.models import build, count_multiply_adds, count_parameters
from kdrepro.schemes import ResponseDistillation, teacher_logits
from kdrepro.train import CrossEntropy, Recipe, evaluate, fit

# how a student arm is trained: a JSON-able description (it keys the cache) and the function that trains it
Method = tuple[dict[str, Any], Callable[[nn.Module], None]]


@dataclass(frozen=True)
class Pair:
    """One teacher -> student comparison: the protocol behind one results table."""

    name: str
    dataset: str
    train_size: int | None          # images of the official training set used for training (None: all the rest)
    val_size: int                   # held out from it; never used for a choice the test set could see
    teacher: str | dict             # a models.build architecture: a published name or a family spec
    student: str | dict
    teacher_recipe: Recipe
    student_recipe: Recipe          # the same for every student arm of the pair
    download: bool = False
    image_size: int | None = None   # resize the images (None: as published)
    test_size: int | None = None    # the first test images only (None: the whole test set; smoke runs use fewer)


def load(pair: Pair) -> Data:
    return load_data(pair.dataset, train_size=pair.train_size, val_size=pair.val_size, download=pair.download,
                     image_size=pair.image_size).first_test(pair.test_size)


def describe(architecture: str | dict) -> str:
    """'wrn_16_2' or 'wide_resnet depth=10 widen=2 base=8'."""
    if isinstance(architecture, str):
        return architecture
    return " ".join([architecture["family"]] + [f"{k}={v}" for k, v in architecture.items() if k != "family"])


class PairRun:
    """A pair's teacher (trained once per seed and cached) and its student arms."""

    def __init__(self, experiment: Experiment, pair: Pair, data: Data):
        self.exp, self.pair = experiment, pair
        self.data = data.to(experiment.device)
        self.data_key = data.key()
        self._logits: dict[int, Tensor] = {}

    def arm_name(self, arm: str, main: bool = True) -> str:
        """A benchmark pair's arms carry the pair's name, so one runs table holds every pair."""
        return arm if main else f"{self.pair.name} {arm}"

    def build(self, architecture: str | dict, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build(architecture, self.data.num_classes, self.data.input_shape[0]).to(self.exp.device)

    def teacher_config(self, seed: int) -> dict[str, Any]:
        return {"data": self.data_key, "architecture": self.pair.teacher, "recipe": asdict(self.pair.teacher_recipe),
                "seed": seed}

    def teacher(self, seed: int) -> nn.Module:
        def train(model: nn.Module) -> None:
            fit(model, CrossEntropy(), self.data.train, self.pair.teacher_recipe, seed=seed,
                name=f"{self.pair.name} teacher seed {seed}")

        return self.exp.model(f"{self.pair.name}-teacher", self.teacher_config(seed),
                              lambda: self.build(self.pair.teacher, seed), train)

    def teacher_arm(self, seed: int, main: bool = True) -> dict[str, Any]:
        return self.exp.run_config(self.arm_name("teacher", main), seed, self.teacher_config(seed),
                            lambda: self.metrics(self.teacher(seed)))

    def teacher_targets(self, seed: int) -> nn.Module | Tensor:
        """What KD reads from the teacher: its logits on the training split, computed once, when the inputs never
        change between epochs; the frozen teacher itself, called on every augmented batch, when they do."""
        if self.pair.student_recipe.augments:
            return self.teacher(seed)
        if seed not in self._logits:
            self._logits[seed] = teacher_logits(self.teacher(seed), self.data.train.x)
        return self._logits[seed]

    def student(self, arm: str, seed: int, method: Method) -> nn.Module:
        """A student trained by the method's `train` (which calls `fit` with the pair's student recipe), cached
        like a teacher; the method's description keys the cache entry with the pair's configuration."""
        description, train = method
        return self.exp.model(f"{self.pair.name}-{arm}", self._student_config(seed, description),
                              lambda: self.build(self.pair.student, seed), train)

    def _student_config(self, seed: int, method: dict[str, Any]) -> dict[str, Any]:
        return {"data": self.data_key, "architecture": self.pair.student, "recipe": asdict(self.pair.student_recipe),
                "teacher": self.teacher_config(seed), **method}

    def student_arm(self, arm: str, seed: int, method: Method, main: bool = True,
                    extra: Callable[[nn.Module], dict[str, Any]] | None = None) -> dict[str, Any]:
        """The test metrics of `student(...)` (plus `extra` ones), recorded as one row of the runs."""
        def compute() -> dict[str, Any]:
            model = self.student(arm, seed, method)
            return {**self.metrics(model), **(extra(model) if extra else {})}

        return self.exp.run_config(self.arm_name(arm, main), seed, self._student_config(seed, method[0]), compute)

    def scratch(self, seed: int, main: bool = True) -> Method:
        """The student on labels alone."""
        def train(model: nn.Module) -> None:
            fit(model, CrossEntropy(), self.data.train, self.pair.student_recipe, seed=seed,
                name=f"{self.arm_name('student', main)} seed {seed}")

        return {"method": "cross-entropy"}, train

    def kd(self, seed: int, temperature: float, hard_weight: float, main: bool = True) -> Method:
        """The student distilled from the teacher's outputs (Hinton et al. 2015)."""
        def train(model: nn.Module) -> None:
            objective = ResponseDistillation(self.teacher_targets(seed), temperature, hard_weight)
            fit(model, objective, self.data.train, self.pair.student_recipe, seed=seed,
                name=f"{self.arm_name('kd', main)} seed {seed}")

        return {"method": "kd", "temperature": temperature, "hard_weight": hard_weight}, train

    def metrics(self, model: nn.Module) -> dict[str, Any]:
        result = evaluate(model, self.data.test)
        return {"test_error": result["error"], "test_errors": result["errors"],
                "parameters": count_parameters(model),
                "multiply_adds": count_multiply_adds(model, self.data.input_shape)}


def benchmark_table(runs: pd.DataFrame, pairs: list[Pair], published: dict[str, dict[str, float]]
                    ) -> list[dict[str, object]]:
    """Benchmark pairs (arms named "<pair> <arm>"): our top-1 accuracy beside the published one, `published`
    being pair name -> arm -> top-1 %."""
    table = []
    for pair in pairs:
        for arm, top1 in published[pair.name].items():
            rows = runs[runs["arm"] == f"{pair.name} {arm}"]
            if not rows.empty:
                table.append({"pair": pair.name, "arm": arm, "top-1 %": mean_std(1 - rows["test_error"], 100),
                              "seeds": len(rows), "published top-1 %": top1})
    return table
