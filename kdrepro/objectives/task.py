"""Objectives without a teacher: the task itself, the baseline every distilled arm is compared with."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from kdrepro.data import Batch
from kdrepro.losses.sequence import sequence_nll
from kdrepro.objectives.base import Context, Objective
from kdrepro.seq2seq import trim


@dataclass(frozen=True)
class CrossEntropy(Objective):
    """Training on hard labels alone: H(y, softmax(z))."""

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        return {"ce": F.cross_entropy(model(batch.x), batch.y)}


@dataclass(frozen=True)
class SequenceNLL(Objective):
    """A translation model trained on its targets: L_NLL = - sum_t log p(y_t | y_<t, x), averaged over the batch's
    real target tokens. Which targets is the arm's data view: the references (the baseline, the teacher), or the
    teacher's translations (Seq-KD, Seq-Inter; Kim & Rush 2016, sections 3.2-3.3). Term: {"nll": ...}."""

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        batch = trim(batch)
        return {"nll": sequence_nll(model(batch.x, batch.y), batch.y)}
