"""Offline relation-based distillation objectives: FSP (relations between a model's layers) and RKD with or
without a metric-learning task (relations between a batch's embeddings). The teacher is frozen (`schemes.freeze`).

RKD on a classifier's penultimate layer (with cross-entropy or Hinton KD) is `schemes.FeatureDistillation` with
`rkd_loss` as its feature loss; the objectives here are the ones that pairs of single layers cannot express.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from kdrepro.data import Batch
from kdrepro.losses.relation import check_fsp_weights, check_rkd_weights, fsp_loss, fsp_matrix, rkd_loss
from kdrepro.metric_learning import triplet_loss
from kdrepro.schemes import freeze
from kdrepro.taps import forward_with_features
from kdrepro.train import Objective


def fsp_matrices(model: nn.Module, x: Tensor, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Tensor]:
    """The FSP matrix of each (first layer, last layer) pair of `model` on the batch x."""
    names = sorted({name for pair in pairs for name in pair})
    _, features = forward_with_features(model, x, names)
    return {(a, b): fsp_matrix(features[a], features[b]) for a, b in pairs}


class FSPDistillation(Objective):
    """Stage 1 of Yim et al. 2017: L_FSP = 1/N sum_x sum_i lambda_i ||G_i^T(x) - G_i^S(x)||_2^2, the student's
    FSP matrices pulled towards the frozen teacher's; `pairs` names the same (first, last) layers in both, one
    pair per stage, and `weights` are the lambda_i (equal by default, as in the paper). No task term: stage 2
    trains the task alone (`CrossEntropy`)."""

    def __init__(self, teacher: nn.Module, pairs: Sequence[tuple[str, str]], weights: Sequence[float] | None = None):
        self.teacher = freeze(teacher)
        self.pairs = [tuple(pair) for pair in pairs]
        self.weights = list(weights) if weights is not None else [1.0] * len(self.pairs)
        check_fsp_weights(self.weights, len(self.pairs))

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        with torch.no_grad():
            teacher = fsp_matrices(self.teacher, batch.x, self.pairs)
        student = fsp_matrices(model, batch.x, self.pairs)
        return sum(weight * self._pair_loss(pair, student[pair], teacher[pair])
                   for weight, pair in zip(self.weights, self.pairs))

    @staticmethod
    def _pair_loss(pair: tuple[str, str], student: Tensor, teacher: Tensor) -> Tensor:
        if student.shape != teacher.shape:  # say which layers, not just which shapes
            raise ValueError(f"FSP matrix of layers {pair[0]!r} -> {pair[1]!r}: the student's has shape "
                             f"{tuple(student.shape[1:])} (channels of {pair[0]!r} x channels of {pair[1]!r}), the "
                             f"teacher's {tuple(teacher.shape[1:])}; pair layers whose channel counts match")
        return fsp_loss(student, teacher)


class TripletObjective(Objective):
    """Metric learning on labels: the triplet loss of the model's embeddings (the teacher's objective, and the
    student's baseline)."""

    def __init__(self, margin: float):
        self.margin = margin

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        return triplet_loss(model(batch.x), batch.y, self.margin)


class RelationalDistillation(Objective):
    """Metric-learning RKD (Park et al. 2019, section 4.1): the student's embedding learns the frozen teacher's
    relations alone, L = lambda_D L_RKD-D + lambda_A L_RKD-A, no label used (the paper's "RKD only" students)."""

    def __init__(self, teacher: nn.Module, distance_weight: float, angle_weight: float):
        self.teacher = freeze(teacher)
        check_rkd_weights(distance_weight, angle_weight)  # fail before any training, not at the first step
        self.distance_weight, self.angle_weight = distance_weight, angle_weight

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        with torch.no_grad():
            teacher = self.teacher(batch.x)
        return rkd_loss(model(batch.x), teacher, self.distance_weight, self.angle_weight)
