"""Sequence objectives: a translation student learns from a frozen teacher's distributions over its outputs.

Sequence-level KD (Kim & Rush 2016, section 3.2) is no objective of its own: it is the task's `SequenceNLL` on the
teacher's translations, a data view (`kdrepro.translation_task.SeqKDTargets`). What is here reads the teacher's
distributions while the student trains. An objective of this kind gets the batch (sources `x`, the arm's targets
`y`, whichever view chose them) and the frozen teacher, `context.require_teacher(self)`: its module (`.model`) runs
teacher-forced on any targets, the student's own samples; its outputs on the batch's targets are kept
(`.forced_outputs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kdrepro.data import Batch
from kdrepro.losses.response import check_hinton_weights
from kdrepro.losses.sequence import check_beta, generalized_jsd_loss, sequence_nll, word_kd_loss
from kdrepro.objectives.base import Context, Objective
from kdrepro.seq2seq import sample, trim


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
        batch = trim(batch)
        teacher_logits = context.require_teacher(self).forced_outputs(batch)
        logits = model(batch.x, batch.y)
        terms = {}
        if self.hard_weight > 0:
            terms["nll"] = self.hard_weight * sequence_nll(logits, batch.y)
        if self.hard_weight < 1:
            terms["word_kd"] = (1 - self.hard_weight) * word_kd_loss(logits, teacher_logits, batch.y, self.temperature)
        return terms


@dataclass(frozen=True)
class OnPolicyKD(Objective):
    """Generalised KD (Agarwal et al. 2024, GKD, Algorithm 1): with probability `on_policy` (their lambda) a batch's
    outputs are the student's own samples (temperature `temperature`, at most `max_len` words, drawn without a
    gradient from the run's objective stream), else the batch's fixed targets (the arm's data view); then one
    teacher-forced pass of the student and of the frozen teacher over those outputs, and the loss

        L = D_JSD(beta)(p_T || p_S) at every token up to the first EOS, averaged over those tokens

    (`losses.sequence.generalized_jsd_loss`: beta = 0 the forward KL, beta = 1 the reverse KL). No gradient flows
    through the sampling, as in GKD. Term: {"gkd": ...}."""

    beta: float
    on_policy: float = 1.0
    temperature: float = 1.0
    max_len: int = 50

    def __post_init__(self) -> None:
        check_beta(self.beta)
        if not 0 <= self.on_policy <= 1:
            raise ValueError(f"on_policy={self.on_policy} is the share of batches the student samples: it must be in "
                             "[0, 1] (1: every batch, 0: the fixed targets only)")
        if not self.temperature > 0 or self.max_len < 1:
            raise ValueError(f"temperature={self.temperature} must be positive and max_len={self.max_len} at least 1")

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        teacher = context.require_teacher(self)
        batch = trim(batch)
        if self.samples(context.generator):
            outputs = sample(model, batch.x, self.max_len, self.temperature, context.generator)
            with torch.no_grad():
                teacher_logits = teacher.model(batch.x, outputs)
        else:   # the fixed targets: the teacher's outputs on them are kept (`Teacher.forced_outputs`)
            outputs, teacher_logits = batch.y, teacher.forced_outputs(batch)
        return {"gkd": generalized_jsd_loss(model(batch.x, outputs), teacher_logits, outputs, self.beta)}

    def samples(self, generator: torch.Generator) -> bool:
        """Whether this batch is on-policy: u ~ U(0, 1) <= lambda (GKD, Algorithm 1); no draw at lambda 0 or 1."""
        if self.on_policy in (0, 1):
            return self.on_policy == 1
        return torch.rand((), generator=generator).item() <= self.on_policy
