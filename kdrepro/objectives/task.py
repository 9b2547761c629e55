"""Objectives without a teacher: the task itself, the baseline every distilled arm is compared with."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from kdrepro.data import Batch
from kdrepro.objectives.base import Context, Objective


@dataclass(frozen=True)
class CrossEntropy(Objective):
    """Training on hard labels alone: H(y, softmax(z))."""

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        return {"ce": F.cross_entropy(model(batch.x), batch.y)}
