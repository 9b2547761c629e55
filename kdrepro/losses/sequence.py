"""Sequence knowledge (Kim & Rush 2016): what a teacher knows about whole outputs, not single labels.

Word-level KD is Hinton KD applied at every target position: the student matches the teacher's next-word
distribution given the same (reference) prefix (Kim & Rush 2016, section 3.1):
    L_WORD-KD = - sum_t sum_k q(y_t = k | y_<t, x) log p(y_t = k | y_<t, x),
interpolated with the usual NLL by the objective (`kdrepro.objectives.sequence.WordKD`):
    L = hard_weight * L_NLL + (1 - hard_weight) * L_WORD-KD.
Sequence-level KD needs no loss of its own: it is L_NLL on the teacher's beam-search output, which stands in for the
teacher's sequence distribution (its mode, approximately), so it lives in the data the student is trained on
(`kdrepro.translation_task.SeqKDTargets`).

Conventions: positions holding padding are excluded; both terms are averaged over the batch's real tokens (not
over sentences); the KD term is KL(q || p) rather than the cross-entropy, which differs by the teacher's entropy,
a constant with zero gradient. The default temperature 1 uses the plain distributions; other values scale as
in Hinton KD (T^2).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdrepro.losses.response import kd_loss
from kdrepro.seq2seq import PAD


def sequence_nll(logits: Tensor, targets: Tensor, pad: int = PAD) -> Tensor:
    """L_NLL = - sum_t log p(y_t | y_<t, x), averaged over the non-padding tokens of the batch."""
    _check_shapes(logits, targets)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=pad)


def word_kd_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, temperature: float = 1.0,
                 pad: int = PAD) -> Tensor:
    """L_WORD-KD as T^2 KL(q_t || p_s) at every real target position, averaged over those tokens: Hinton KD with
    tokens for examples."""
    _check_shapes(student_logits, targets)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")
    real = targets != pad
    # rows are tokens: "batchmean" in the response loss becomes the mean over real tokens
    return kd_loss(student_logits[real], teacher_logits[real], temperature)


def _check_shapes(logits: Tensor, targets: Tensor) -> None:
    if logits.dim() != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} must be (batch, length, vocabulary) over targets "
                         f"{tuple(targets.shape)}")
