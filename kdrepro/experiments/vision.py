"""What the image-classification papers share: a teacher -> student pair on one dataset (protocol data), the
pair's arms, and the table of a benchmark's pairs beside the published numbers."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from kdrepro.arms import Arm, Net, Stage
from kdrepro.data import Data, load_data
from kdrepro.objectives import Objective
from kdrepro.objectives.task import CrossEntropy
from kdrepro.tables import mean_std
from kdrepro.train import Recipe


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
    teacher_seed: int = 0           # the one teacher, trained at this seed, that every seed's students learn from


def load(pair: Pair) -> Data:
    return load_data(pair.dataset, train_size=pair.train_size, val_size=pair.val_size, download=pair.download,
                     image_size=pair.image_size).first_test(pair.test_size)


def datasets(pair: Pair, benchmark) -> dict[str, Data]:
    """A notebook's datasets: its pair's ("main"), and each benchmark pair's (of `benchmark`'s (pair, layers)), by
    the pair's name."""
    return {"main": load(pair), **{other.name: load(other) for other, _ in benchmark}}


def describe(architecture: str | dict) -> str:
    """'wrn_16_2' or 'wide_resnet depth=10 widen=2 base=8'."""
    if isinstance(architecture, str):
        return architecture
    return " ".join([architecture["family"]] + [f"{k}={v}" for k, v in architecture.items() if k != "family"])


def pair_arms(pair: Pair, distilled: dict[str, Objective | tuple[Stage, ...]], prefix: str = ""
              ) -> dict[str, Arm]:
    """The pair's teacher (labels alone, weights of its own), its student on labels alone, and a student per
    distilling objective (or stages) of `distilled`, each learning from that teacher; named `prefix` + their key.
    One teacher for every seed, as the papers train one: trained once at `teacher_seed` on that seed's draw (a
    shared arm), it pays for more student seeds. Every student starts from the same weights at a seed, sees the
    same batches and follows the pair's student recipe, so the arms differ by their objective alone."""
    teacher = Arm(f"{prefix}teacher", Net(pair.teacher, "teacher"), CrossEntropy(), pair.teacher_recipe,
                  seed=pair.teacher_seed, shared=True)
    student = Net(pair.student, "student")
    return {"teacher": teacher, "student": Arm(f"{prefix}student", student, CrossEntropy(), pair.student_recipe),
            **{name: Arm(prefix + name, student, objective, pair.student_recipe, teacher)
               for name, objective in distilled.items()}}


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
