"""Sequence objectives: a translation student learns from a frozen teacher's distributions over its outputs.

Sequence-level KD (Kim & Rush 2016, section 3.2) is no objective of its own: it is the task's `SequenceNLL` on the
teacher's translations, a data view (`kdrepro.translation_task.SeqKDTargets`). What is here reads the teacher's
distributions while the student trains. An objective of this kind gets the batch (sources `x`, the arm's targets
`y`, whichever view chose them) and the frozen teacher module as `context.require_teacher(self).model`, which it
may run teacher-forced on any targets, the batch's or the student's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kdrepro.data import Batch
from kdrepro.losses.response import check_hinton_weights
from kdrepro.losses.sequence import sequence_nll, word_kd_loss
from kdrepro.objectives.base import Context, Objective
from kdrepro.seq2seq import trim


@dataclass(frozen=True)
class WordKD(Objective):
    """Word-level KD (Kim & Rush 2016, section 3.1): at every real target position, given the same prefix, the
    student's next-word distribution p matches the frozen teacher's q, interpolated with the NLL,

        L = hard_weight * L_NLL + (1 - hard_weight) * T^2 KL(q^T || p^T)

    both averaged over real tokens. Terms: {"nll": ..., "word_kd": ...}, each weighted; a zero weight drops its
    term."""

    hard_weight: float
    temperature: float = 1.0

    def __post_init__(self) -> None:
        check_hinton_weights(self.temperature, self.hard_weight)  # fail when declared, not at the first step

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        teacher = context.require_teacher(self).model
        batch = trim(batch)
        with torch.no_grad():
            teacher_logits = teacher(batch.x, batch.y)
        logits = model(batch.x, batch.y)
        terms = {}
        if self.hard_weight > 0:
            terms["nll"] = self.hard_weight * sequence_nll(logits, batch.y)
        if self.hard_weight < 1:
            terms["word_kd"] = (1 - self.hard_weight) * word_kd_loss(logits, teacher_logits, batch.y, self.temperature)
        return terms
