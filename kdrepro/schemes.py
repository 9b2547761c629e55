"""How teacher and student relate. Offline: a frozen, already trained teacher guides the student.

The teacher is kept out of every optimiser and in evaluation mode (no dropout noise in its targets).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrepro.data import Batch
from kdrepro.losses.response import check_hinton_weights, hinton_loss
from kdrepro.taps import forward_with_features
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



class FeatureDistillation(Objective):
    """Offline feature-based distillation:

        L = task + weight * sum_{(s, t) in pairs} feature_loss(adapter_s(F_s(x)), F_t(x))

    where F_s, F_t are the outputs of the student's and teacher's modules named s and t, adapter_s is an owned,
    trained module (a FitNets regressor) or the identity, and task is the cross-entropy on labels, Hinton KD when
    a `temperature` is given, or nothing when `task` is False (FitNets' first stage: hints alone).
    """

    def __init__(self, teacher: nn.Module, pairs: Sequence[tuple[str, str]],
                 feature_loss: Callable[[Tensor, Tensor], Tensor], weight: float, *,
                 adapters: dict[str, nn.Module] | None = None, task: bool = True,
                 temperature: float | None = None, hard_weight: float = 1.0):
        if not weight >= 0:
            raise ValueError(f"the feature term's weight must be non-negative, got {weight}")
        if temperature is not None:
            check_hinton_weights(temperature, hard_weight)
        self.teacher = freeze(teacher)
        self.pairs = list(pairs)
        self.feature_loss = feature_loss
        self.weight = weight
        self.adapters = adapters or {}
        self.task = task
        self.temperature, self.hard_weight = temperature, hard_weight

    def parameters(self) -> list[nn.Parameter]:
        return [p for adapter in self.adapters.values() for p in adapter.parameters()]

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        with torch.no_grad():
            teacher_logits, teacher_features = forward_with_features(self.teacher, batch.x, [t for _, t in self.pairs])
        logits, features = forward_with_features(model, batch.x, [s for s, _ in self.pairs])
        total = sum(self._pair_loss(s, t, features[s], teacher_features[t]) for s, t in self.pairs)
        loss = self.weight * total
        if not self.task:
            return loss
        if self.temperature is None:
            return loss + F.cross_entropy(logits, batch.y)
        return loss + hinton_loss(logits, teacher_logits, batch.y, self.temperature, self.hard_weight)

    def _pair_loss(self, student_name: str, teacher_name: str, student: Tensor, teacher: Tensor) -> Tensor:
        adapter = self.adapters.get(student_name)
        try:
            return self.feature_loss(student if adapter is None else adapter(student), teacher)
        except ValueError as error:  # say which layers, not just which shapes
            raise ValueError(f"student layer {student_name!r} and teacher layer {teacher_name!r}: {error}") from None
