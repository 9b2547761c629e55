"""Response-based knowledge: the teacher's output distribution (Hinton, Vinyals & Dean 2015).

Conventions, explicit here because codebases differ: the soft term is KL(p_T || p_S) with both softmaxes at
temperature T, averaged over the batch ("batchmean") and multiplied by T^2; it differs from the paper's soft
cross-entropy only by the teacher's entropy, a constant with zero gradient. The weight of the hard-label term is
`hard_weight` (called alpha in some codebases, gamma in others); the soft term gets 1 - hard_weight.
"""

import math

import torch.nn.functional as F
from torch import Tensor


def soft_targets(logits: Tensor, temperature: float) -> Tensor:
    """q_i = exp(z_i / T) / sum_j exp(z_j / T)  (Hinton et al. 2015, eq. 1)."""
    _check_temperature(temperature)
    return F.softmax(logits / temperature, dim=-1)


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T^2 * KL(softmax(z_t / T) || softmax(z_s / T)), averaged over the batch.

    The T^2 keeps the gradient's size independent of T: d/dz_s = T (q_s - q_t) / N, which tends to
    (z_s - z_t) / (C N) for large T and zero-mean logits (Hinton et al. 2015, section 2.1).
    """
    _check_temperature(temperature)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")
    log_q_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_q_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_q_student, log_q_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def hinton_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor,
                temperature: float, hard_weight: float) -> Tensor:
    """hard_weight * H(y, softmax(z_s)) + (1 - hard_weight) * T^2 KL(q_t^T || q_s^T).

    The paper's weighted average of the soft and hard objectives, the hard one "with a considerably lower
    weight"; hard_weight = 0 is pure distillation, 1 is training on labels alone.
    """
    check_hinton_weights(temperature, hard_weight)
    soft = kd_loss(student_logits, teacher_logits, temperature)
    if hard_weight == 0.0:
        return soft
    return hard_weight * F.cross_entropy(student_logits, labels) + (1.0 - hard_weight) * soft


def check_hinton_weights(temperature: float, hard_weight: float) -> None:
    _check_temperature(temperature)
    if not 0.0 <= hard_weight <= 1.0:
        raise ValueError(f"hard_weight must be in [0, 1], got {hard_weight}")


def _check_temperature(temperature: float) -> None:
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be positive and finite, got {temperature}")
