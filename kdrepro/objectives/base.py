"""The contract between an objective and the one training loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

import torch
from torch import Tensor, nn

from kdrepro.data import Batch, Split

if TYPE_CHECKING:
    from kdrepro.schemes import Teacher


@dataclass
class Context:
    """What an objective may use besides the model and the batch: the frozen teacher (None without one), the
    modules the objective owns and trains with the model (a FitNets regressor), and a generator of its own for
    any randomness it draws (DKPP's permutations)."""

    teacher: Teacher | None = None
    modules: nn.ModuleDict = field(default_factory=nn.ModuleDict)
    generator: torch.Generator = field(default_factory=torch.Generator)

    def require_teacher(self, objective: Objective) -> Teacher:
        if self.teacher is None:
            raise ValueError(f"{type(objective).__name__} distils from a teacher, but the run has none; "
                             "give the arm a teacher")
        return self.teacher


class Objective:
    """Base of every objective: subclasses are frozen dataclasses of their settings and define `terms`."""

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        """The loss on `batch` as named terms, each already weighted: `fit` minimises their sum."""
        raise NotImplementedError

    def modules(self, model: nn.Module, teacher: Teacher | None, input_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        """Trainable modules the objective owns (built once per run, optimised with the model); none by default."""
        return {}

    def sampler(self) -> Callable[[Split, int, torch.Generator], Iterable[Batch]] | None:
        """How an epoch's batches are drawn, when the objective needs a particular draw (None: shuffled)."""
        return None
