"""Sequence knowledge (Kim & Rush 2016): what a teacher knows about whole outputs, not single labels.

Word-level KD is Hinton KD applied at every target position: the student matches the teacher's next-word
distribution given the same (reference) prefix (Kim & Rush 2016, section 3.1):
    L_WORD-KD = - sum_t sum_k q(y_t = k | y_<t, x) log p(y_t = k | y_<t, x),
interpolated with the usual NLL by the objective (`kdrepro.objectives.sequence.WordKD`):
    L = hard_weight * L_NLL + (1 - hard_weight) * L_WORD-KD.
Sequence-level KD needs no loss of its own: it is L_NLL on the teacher's beam-search output, which stands in for the
teacher's sequence distribution (its mode, approximately), so it lives in the data the student is trained on
(`kdrepro.translation_task.SeqKDTargets`).

On-policy distillation (Agarwal et al. 2024, GKD, arXiv 2306.13649) trains the student on outputs it samples
itself, every token graded by the teacher's next-word distribution given the student's own prefix. Its divergence
is the generalised Jensen-Shannon divergence (GKD, section 3), per token, with P the teacher's and Q the student's
distribution and M = beta P + (1 - beta) Q:
    D_JSD(beta)(P || Q) = beta KL(P || M) + (1 - beta) KL(Q || M).
Its ends are the two KLs: D_JSD(beta) / beta -> KL(P || Q) as beta -> 0 (GKD states this limit), and likewise
D_JSD(beta) / (1 - beta) -> KL(Q || P) as beta -> 1; so here beta = 0 is the forward KL(teacher || student) of
supervised KD (mode-covering) and beta = 1 the reverse KL(student || teacher) of MiniLLM (Gu et al. 2024) and of
the on-policy recipes that grade a student's samples by per-token reverse KL (mode-seeking). TRL's GKDTrainer
documents the same two ends for its `beta`.

Conventions: positions holding padding are excluded (and, for the GKD divergences, anything after a row's first
EOS); every term is averaged over the batch's real tokens (not over sentences); the KD term is KL(q || p) rather
than the cross-entropy, which differs by the teacher's entropy, a constant with zero gradient. The default temperature 1 uses the plain distributions; other values scale as
in Hinton KD (T^2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from kdrepro.losses.response import kd_loss
from kdrepro.seq2seq import EOS, PAD


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


def real_tokens(targets: Tensor, pad: int = PAD) -> Tensor:
    """The positions a sequence loss counts: every word up to and including the row's first EOS, never padding
    (a sampled row holds padding after its EOS; anything a row holds after its first EOS is not part of it)."""
    eos = (targets == EOS).long()
    return (targets != pad) & (eos.cumsum(dim=1) - eos == 0)


def token_kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) = sum_k p_k (log p_k - log q_k) over the last dimension, from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def generalized_jsd_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, beta: float,
                         pad: int = PAD) -> Tensor:
    """D_JSD(beta)(p_T || p_S) of GKD (module docstring) at every real position of `targets` (`real_tokens`: up to
    the first EOS, never padding), averaged over those tokens. beta = 0 is exactly the forward KL(p_T || p_S),
    beta = 1 the reverse KL(p_S || p_T); between them the mixture M = beta p_T + (1 - beta) p_S."""
    _check_shapes(student_logits, targets)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")
    check_beta(beta)
    real = real_tokens(targets, pad)
    student, teacher = (F.log_softmax(logits[real], dim=-1) for logits in (student_logits, teacher_logits))
    if beta == 0:
        return token_kl(teacher, student).mean()
    if beta == 1:
        return token_kl(student, teacher).mean()
    mixture = torch.logsumexp(torch.stack([teacher + math.log(beta), student + math.log(1 - beta)]), dim=0)
    return (beta * token_kl(teacher, mixture) + (1 - beta) * token_kl(student, mixture)).mean()


def check_beta(beta: float) -> None:
    if not 0 <= beta <= 1:
        raise ValueError(f"beta={beta} must be in [0, 1]: 0 is the forward KL(teacher || student), 1 the reverse "
                         "KL(student || teacher)")


def _check_shapes(logits: Tensor, targets: Tensor) -> None:
    if logits.dim() != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} must be (batch, length, vocabulary) over targets "
                         f"{tuple(targets.shape)}")
