"""An arm is data: a frozen spec of everything that determines a trained model, whose fields are its cache key.

    Arm(name, net, objective, recipe, teacher, rows, seed)

- `net` says what is trained (an architecture, and the stream its initial weights come from);
- `objective` (or a sequence of `Stage`s) says what it minimises; `recipe` how it is optimised;
- `teacher` is another arm (trained first, frozen, shared by every arm that names it);
- `rows` is the data view: which training examples it learns from, and with which targets (`Rows` keeps some
  examples; a view may also give them the teacher's outputs as targets, as sequence-level KD does);
- `seed` drives every random stream of the run through `kdrepro.seeds.derive`;
- `start` is another arm whose trained weights this arm starts from instead of `net`'s initial weights (a
  supervised checkpoint that a distillation method then fine-tunes);
- `shared` marks an arm trained once, at its own seed, for every seed's runs (a paper's one teacher).

No cache key is written by hand: `spec_key` walks the spec, so a key can never miss a field. The arm's name is
the only field left out: two arms with one configuration (the main KD arm and the sweep's point at the same T)
are one computation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from kdrepro.data import Data, Split
from kdrepro.models import build
from kdrepro.objectives import Objective
from kdrepro.schemes import Teacher
from kdrepro.seeds import derive, generator, seeded
from kdrepro.train import History, Recipe, fit


class Buildable(Protocol):
    def build(self, seed: int, data: Data) -> nn.Module: ...


class DataView(Protocol):
    """What an arm (or a stage) learns from. `split` gives the training split and the indices of its rows in the
    data's (None: every row, in order); it sees the trained teacher, for a view whose targets are the teacher's
    outputs. `recipe` adjusts the recipe to the rows kept (the same number of steps)."""

    def split(self, data: Data, teacher: nn.Module | None, seed: int) -> tuple[Split, Tensor | None]: ...

    def recipe(self, recipe: Recipe, full_size: int, kept: int) -> Recipe: ...


@dataclass(frozen=True)
class Net:
    """A network to train: a `kdrepro.models.build` architecture, initialised from the stream `init` of the run's
    seed. Arms whose nets share `init` start from the same weights at a seed (the pairing of scratch and
    distilled students); a teacher has an init of its own."""

    architecture: str | dict
    init: str = "student"

    def build(self, seed: int, data: Data) -> nn.Module:
        with seeded(seed, "init", self.init):
            return build(self.architecture, data.num_classes, data.input_shape[0], data.input_shape)


@dataclass(frozen=True)
class Stage:
    """One stage of a multi-stage method (FitNets: hints, then KD): an objective for `epochs` of the recipe,
    with a fresh optimiser, starting from the weights the previous stage left. A stage with a `recipe` of its own
    is optimised by it instead (FSP's first stage: Adam on a loss of another scale), for `epochs`, and is not
    counted in the arm's recipe's epochs. A stage with `rows` of its own learns from that data view instead of the
    arm's (Kim & Rush's combination: the teacher's best translations, then its Seq-Inter choices)."""

    objective: Objective
    epochs: int
    recipe: Recipe | None = None
    rows: DataView | None = None


@dataclass(frozen=True)
class Rows:
    """The data view: which training examples an arm learns from (all of them by default).

    `without_class` leaves one class out (Hinton's dark-knowledge experiment); `fraction` keeps a random share,
    drawn anew for every seed. With `same_steps`, the arm gets as many optimisation steps as the whole training
    split would give it (more epochs over fewer examples): the same budget as every other arm."""

    without_class: int | None = None
    fraction: float = 1.0
    same_steps: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ValueError(f"Rows(fraction={self.fraction}) must be in (0, 1]")

    def select(self, labels: Tensor, seed: int) -> Tensor | None:
        """Indices of the rows kept (sorted), or None for every row."""
        if self.without_class is None and self.fraction == 1:
            return None
        rows = torch.arange(len(labels))
        if self.without_class is not None:
            rows = rows[labels.cpu() != self.without_class]
        if self.fraction < 1:
            order = torch.randperm(len(rows), generator=generator(seed, "rows", self.fraction))
            rows = rows[order[: max(1, round(self.fraction * len(rows)))]].sort().values
        return rows

    def split(self, data: Data, teacher: nn.Module | None, seed: int) -> tuple[Split, Tensor | None]:
        """The rows kept of the training split, with their labels, and their indices in it (None: all of them)."""
        rows = self.select(data.train.y, seed)
        return (data.train if rows is None else data.train.subset(rows.to(data.train.y.device))), rows

    def recipe(self, recipe: Recipe, full_size: int, kept: int) -> Recipe:
        """`recipe`, with its epochs scaled so `kept` examples get the steps `full_size` would (with `same_steps`)."""
        if not self.same_steps or kept == full_size:
            return recipe
        steps = recipe.epochs * math.ceil(full_size / recipe.batch_size)
        return replace(recipe, epochs=max(1, round(steps / math.ceil(kept / recipe.batch_size))))


@dataclass(frozen=True)
class Arm:
    name: str
    net: Buildable
    objective: Objective | tuple[Stage, ...]
    recipe: Recipe
    teacher: Arm | None = None
    rows: DataView = Rows()
    seed: int = 0
    shared: bool = False   # one model for every seed: `at` leaves it at its own seed
    start: Arm | None = None   # the arm whose trained weights this one starts from (the same network)

    def __post_init__(self) -> None:
        shared = sum(stage.epochs for stage in self.stages if stage.recipe is None)
        if shared > self.recipe.epochs:
            raise ValueError(f"arm {self.name!r}: its stages take {shared} epochs of its recipe, more than the "
                             f"recipe's {self.recipe.epochs}")

    def at(self, seed: int) -> Arm:
        """The same arm (and its teachers) at `seed`; a shared arm stays at its own seed, so every seed's students
        learn from one teacher."""
        if self.shared:
            return self
        return replace(self, seed=seed, teacher=None if self.teacher is None else self.teacher.at(seed),
                       start=None if self.start is None else self.start.at(seed))

    def key(self) -> dict[str, Any]:
        """Every field but the name: what the trained model depends on."""
        return {field.name: spec_key(getattr(self, field.name)) for field in dataclasses.fields(self)
                if field.name != "name"}

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The objective as stages: a single objective is one stage of all the recipe's epochs."""
        if isinstance(self.objective, tuple):
            return self.objective
        return (Stage(self.objective, self.recipe.epochs),)

    def describe(self) -> str:
        """One line a reader can check the wiring with: objective(s), network, teacher, data view, recipe."""
        objective = " then ".join(_stage(s) for s in self.objective) \
            if isinstance(self.objective, tuple) else _call(self.objective)
        parts = [f"{self.name}: {objective}", f"net {_call(self.net)}"]
        if self.shared:
            parts.append(f"one model for every seed, trained at seed {self.seed}")
        if self.teacher is not None:
            parts.append(f"teacher {self.teacher.name}")
        if self.start is not None:
            parts.append(f"starts from {self.start.name}'s trained weights")
        if self.rows != Rows():
            parts.append(_call(self.rows))
        return "; ".join(parts) + f"; {self.recipe.epochs} epochs"


def spec_key(value: Any) -> Any:
    """A JSON-able image of a spec: dataclasses by type and fields, recursively; tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__,
                **{f.name: spec_key(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return {str(k): spec_key(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [spec_key(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def train_arm(arm: Arm, model: nn.Module, data: Data, teacher: nn.Module | None) -> list[History]:
    """Train `model` (built by `arm.net` at `arm.seed`) as the arm says: its stages in order, each on its data view
    (its own, else the arm's rows) and a `fit` with the arm's seed; `teacher` is the trained model of
    `arm.teacher`, frozen by the offline scheme.

    Every stage trains on the arm's own stream, the one a single-stage arm at that seed trains on: whichever stage
    does the work of the scratch student (FitNets' KD stage, FSP's cross-entropy stage, Seq-KD's first stage) sees
    the scratch student's batches in the scratch student's order, so the arms stay paired."""
    stream = derive(arm.seed, "stage", 0)
    histories = []
    for i, stage in enumerate(arm.stages):
        view = arm.rows if stage.rows is None else stage.rows
        train, rows = view.split(data, teacher, arm.seed)
        recipe = view.recipe(arm.recipe, len(data.train), len(train))
        stage_recipe = for_epochs(recipe if stage.recipe is None else stage.recipe,
                                  round(stage.epochs * recipe.epochs / arm.recipe.epochs))
        offline = None if teacher is None else Teacher(teacher, data.train.x, rows, augmented=stage_recipe.augments,
                                                       train=train)
        histories.append(fit(model, stage.objective, train, stage_recipe, seed=stream,
                             teacher=offline, val=data.val if stage_recipe.validation_curve else None,
                             name=f"{arm.name} seed {arm.seed}" + (f" stage {i + 1}" if i else "")))
    return histories


def for_epochs(recipe: Recipe, epochs: int) -> Recipe:
    """`recipe` for `epochs` (at least one), keeping the milestones that fall inside them."""
    epochs = max(1, epochs)
    return replace(recipe, epochs=epochs, milestones=tuple(m for m in recipe.milestones if m < epochs))


def _stage(stage: Stage) -> str:
    """'Hints(...) for 5 epochs', with the stage's own recipe and data view when it has them."""
    own = "" if stage.recipe is None else f" of {_call(replace(stage.recipe, epochs=stage.epochs))}"
    view = "" if stage.rows is None else f" on {_call(stage.rows)}"
    return f"{_call(stage.objective)}{view} for {stage.epochs} epochs{own}"


def _call(spec: Any) -> str:
    """'ResponseKD(temperature=4.0, hard_weight=0.1)': a spec as the call that makes it."""
    if dataclasses.is_dataclass(spec):
        fields = ", ".join(f"{f.name}={_call(getattr(spec, f.name))}" for f in dataclasses.fields(spec)
                           if getattr(spec, f.name) != f.default)
        return f"{type(spec).__name__}({fields})"
    if isinstance(spec, dict) and "family" in spec:
        return " ".join([spec["family"]] + [f"{k}={v}" for k, v in spec.items() if k != "family"])
    if isinstance(spec, tuple):  # a cohort's peers: each as its call
        return "(" + ", ".join(_call(item) for item in spec) + ")"
    return repr(spec) if isinstance(spec, str) else str(spec)
