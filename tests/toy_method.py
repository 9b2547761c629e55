"""A method added from outside the package, through its public extension points only: an objective (here, the
logit matching of Ba & Caruana 2014, the mean squared error between student and teacher logits) and arms that use
it. Nothing in kdrepro/ changes to add it."""

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from kdrepro.arms import Arm, Net
from kdrepro.data import Batch
from kdrepro.objectives import Context, Objective
from kdrepro.objectives.task import CrossEntropy
from kdrepro.train import Recipe


@dataclass(frozen=True)
class LogitMatching(Objective):
    """L = weight * mean (z_s - z_t)^2 + H(y, p_s)."""

    weight: float = 1.0

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        logits = model(batch.x)
        teacher = context.require_teacher(self).outputs(batch)
        return {"ce": F.cross_entropy(logits, batch.y), "logits": self.weight * F.mse_loss(logits, teacher)}


def arms(recipe: Recipe) -> dict[str, Arm]:
    teacher = Arm("teacher", Net({"family": "mlp", "hidden": [16]}, "teacher"), CrossEntropy(), recipe)
    student = Net({"family": "mlp", "hidden": [4]})
    return {"teacher": teacher, "student": Arm("student", student, CrossEntropy(), recipe),
            "logit_matching": Arm("logit_matching", student, LogitMatching(weight=0.5), recipe, teacher)}
