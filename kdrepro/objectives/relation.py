"""Relation-based objectives: the student learns relations that its teacher's representations hold, between layers
(FSP) or between the examples of a batch (RKD), not the representations themselves.

- `FSP`: stage 1 of Yim et al. 2017, the flow matrices between the first and the last map of each stage;
- `RKD`: metric learning by RKD alone (Park et al. 2019, section 4.1), no label used;
- `RKDWithKD`: RKD on a classifier's penultimate layer added to Hinton KD (Park et al. 2019, section 4.2).

FSP's second stage is the task (`objectives.task.CrossEntropy`): the two stages are `arms.Stage`s of one arm.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from kdrepro.data import Batch, Split
from kdrepro.losses.relation import check_fsp_weights, check_rkd_weights, fsp_loss, fsp_matrix, rkd_terms
from kdrepro.losses.response import check_hinton_weights
from kdrepro.metric_learning import class_balanced_batches
from kdrepro.objectives.base import Context, Objective
from kdrepro.objectives.response import response_terms
from kdrepro.taps import forward_with_features

LayerPairs = tuple[tuple[str, str], ...]   # (first, last) module of each stage, named alike in both networks


@dataclass(frozen=True)
class FSP(Objective):
    """Stage 1 of Yim et al. 2017 (eq. 2): the student's FSP matrices pulled towards the frozen teacher's,

        L_FSP = 1/N sum_x sum_i lambda_i || G_i^T(x) - G_i^S(x) ||_2^2

    `pairs` names one (first, last) pair of layers per stage, the same names in both networks; `weights` are the
    lambda_i (None: 1 each, as in the paper). No label is used: stage 2 trains the task. Term: {"fsp": L_FSP}."""

    pairs: LayerPairs
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check_fsp_weights(self.lambdas, len(self.pairs))  # fail when declared, not at the first step

    @property
    def lambdas(self) -> tuple[float, ...]:
        return (1.0,) * len(self.pairs) if self.weights is None else tuple(self.weights)

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        _, features = context.require_teacher(self).features(batch, layer_names(self.pairs))
        teacher = flow_matrices(features, self.pairs)
        student = fsp_matrices(model, batch.x, self.pairs)
        return {"fsp": sum(weight * pair_loss(pair, student[pair], teacher[pair])
                           for weight, pair in zip(self.lambdas, self.pairs))}


def layer_names(pairs: Sequence[tuple[str, str]]) -> list[str]:
    return sorted({name for pair in pairs for name in pair})


def flow_matrices(features: dict[str, Tensor], pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Tensor]:
    """The FSP matrix G (Yim et al. 2017, eq. 1) of each (first, last) pair, from the layers' outputs."""
    return {(a, b): fsp_matrix(features[a], features[b]) for a, b in pairs}


def fsp_matrices(model: nn.Module, x: Tensor, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Tensor]:
    """The FSP matrix of each (first layer, last layer) pair of `model` on the batch x."""
    _, features = forward_with_features(model, x, layer_names(pairs))
    return flow_matrices(features, pairs)


def pair_loss(pair: tuple[str, str], student: Tensor, teacher: Tensor) -> Tensor:
    """`fsp_loss` of one layer pair; a shape error names the two layers, not just the shapes."""
    if student.shape != teacher.shape:
        raise ValueError(f"FSP matrix of layers {pair[0]!r} -> {pair[1]!r}: the student's has shape "
                         f"{tuple(student.shape[1:])} (channels of {pair[0]!r} x channels of {pair[1]!r}), the "
                         f"teacher's {tuple(teacher.shape[1:])}; pair layers whose channel counts match")
    return fsp_loss(student, teacher)


@dataclass(frozen=True)
class RKD(Objective):
    """Metric learning by RKD alone (Park et al. 2019, section 4.1, eqs. 5 and 7): the student's embeddings learn
    the relations of the frozen teacher's, and no label is used (the paper's "RKD only" students),

        L = lambda_D L_RKD-D + lambda_A L_RKD-A

    A zero weight drops its term. With `per_class`, batches are drawn as `task.Triplet` draws them (class-balanced),
    so RKD students see the batches of the triplet-trained arms at the same seed; None: shuffled batches.
    Terms: {"rkd_distance": lambda_D L_RKD-D, "rkd_angle": lambda_A L_RKD-A}."""

    distance_weight: float
    angle_weight: float
    per_class: int | None = None

    def __post_init__(self) -> None:
        check_rkd_weights(self.distance_weight, self.angle_weight)

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        teacher = context.require_teacher(self).outputs(batch)
        return rkd_terms(model(batch.x), teacher, self.distance_weight, self.angle_weight)

    def sampler(self) -> Callable[[Split, int, torch.Generator], Iterable[Batch]] | None:
        return None if self.per_class is None else partial(class_balanced_batches, per_class=self.per_class)


@dataclass(frozen=True)
class RKDWithKD(Objective):
    """RKD on a classifier's penultimate layer added to Hinton KD (Park et al. 2019, section 4.2):

        L = hard_weight H(y, p_s) + (1 - hard_weight) T^2 KL(p_t^T || p_s^T) + lambda_D L_RKD-D + lambda_A L_RKD-A

    the relations taken between the outputs of the module `layer` of student and teacher (the pooled features
    before the classifier: "embedding" in this package's ResNets), which may differ in size. Terms: {"ce", "kd",
    "rkd_distance", "rkd_angle"}; a zero weight drops its term."""

    temperature: float
    hard_weight: float
    distance_weight: float
    angle_weight: float
    layer: str = "embedding"

    def __post_init__(self) -> None:
        check_hinton_weights(self.temperature, self.hard_weight)
        check_rkd_weights(self.distance_weight, self.angle_weight)

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        teacher_logits, teacher = context.require_teacher(self).features(batch, [self.layer])
        logits, student = forward_with_features(model, batch.x, [self.layer])
        return {**response_terms(logits, teacher_logits, batch.y, self.temperature, self.hard_weight),
                **rkd_terms(student[self.layer], teacher[self.layer], self.distance_weight, self.angle_weight)}
