"""Objectives without a teacher: the task itself, the baseline every distilled arm is compared with."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrepro.data import Batch, Split
from kdrepro.losses.sequence import sequence_nll
from kdrepro.losses.task import label_smoothing_loss
from kdrepro.metric_learning import check_margin, class_balanced_batches, triplet_loss
from kdrepro.objectives.base import Context, Objective
from kdrepro.seq2seq import trim


@dataclass(frozen=True)
class CrossEntropy(Objective):
    """Training on hard labels alone: H(y, softmax(z))."""

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        return {"ce": F.cross_entropy(model(batch.x), batch.y)}


@dataclass(frozen=True)
class LabelSmoothing(Objective):
    """Training on smoothed labels, H(q, softmax(z)) with q = (1 - eps) onehot(y) + eps / K
    (`losses.task.label_smoothing_loss`): a regulariser without a teacher, the control beside a distilled or
    mutually trained student. Term: {"smoothed_ce": ...}."""

    smoothing: float

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        return {"smoothed_ce": label_smoothing_loss(model(batch.x), batch.y, self.smoothing)}


@dataclass(frozen=True)
class Triplet(Objective):
    """Metric learning on labels, the objective of Park et al. 2019's teacher and of its baseline students: the
    triplet loss of the model's embeddings,

        max(0, ||a - p||^2 - ||a - n||^2 + margin) averaged over the batch's triplets that violate the margin

    (`metric_learning.triplet_loss`), on class-balanced batches of at least `per_class` examples of each class
    drawn, so every batch holds positives. Term: {"triplet": ...}."""

    margin: float
    per_class: int

    def __post_init__(self) -> None:
        check_margin(self.margin)

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        return {"triplet": triplet_loss(model(batch.x), batch.y, self.margin)}

    def sampler(self) -> Callable[[Split, int, torch.Generator], Iterable[Batch]]:
        return partial(class_balanced_batches, per_class=self.per_class)


@dataclass(frozen=True)
class SequenceNLL(Objective):
    """A translation model trained on its targets: L_NLL = - sum_t log p(y_t | y_<t, x), averaged over the batch's
    real target tokens. Which targets is the arm's data view: the references (the baseline, the teacher), or the
    teacher's translations (Seq-KD, Seq-Inter; Kim & Rush 2016, sections 3.2-3.3). Term: {"nll": ...}."""

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        batch = trim(batch)
        return {"nll": sequence_nll(model(batch.x, batch.y), batch.y)}
