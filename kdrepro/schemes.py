"""How teacher and student relate. Offline: a frozen, already trained teacher guides the student.

The teacher is kept out of every optimiser and in evaluation mode (no dropout noise in its targets).
"""

from __future__ import annotations

from torch import Tensor, nn

from kdrepro.data import Batch
from kdrepro.losses.response import check_hinton_weights, hinton_loss
from kdrepro.train import Objective, predict_logits


def freeze(model: nn.Module) -> nn.Module:
    """Evaluation mode and no gradients: a teacher that cannot change."""
    model.eval()
    model.requires_grad_(False)
    return model


class ResponseDistillation(Objective):
    """Offline Hinton KD: hard_weight * CE + (1 - hard_weight) * T^2 KL(teacher^T || student^T).

    `teacher` is a frozen module called on every batch, or a tensor of its logits for every training example
    (rows aligned with the training split), computed once because the inputs never change between epochs.
    """

    def __init__(self, teacher: nn.Module | Tensor, temperature: float, hard_weight: float):
        check_hinton_weights(temperature, hard_weight)  # fail before any training, not at the first step
        self.teacher = teacher if isinstance(teacher, Tensor) else freeze(teacher)
        self.temperature = temperature
        self.hard_weight = hard_weight
        self.fixed_inputs = isinstance(teacher, Tensor)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        if isinstance(self.teacher, Tensor):
            teacher_logits = self.teacher[batch.index]
        else:
            teacher_logits = predict_logits(self.teacher, batch.x)
        return hinton_loss(model(batch.x), teacher_logits, batch.y, self.temperature, self.hard_weight)


def teacher_logits(teacher: nn.Module, x: Tensor) -> Tensor:
    """The frozen teacher's logits for a whole split: the offline scheme's targets, computed once."""
    return predict_logits(freeze(teacher), x)

