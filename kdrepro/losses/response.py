"""Response-based knowledge: the teacher's output distribution (Hinton, Vinyals & Dean 2015).

Conventions, explicit here because codebases differ: the soft term is KL(p_T || p_S) with both softmaxes at
temperature T, averaged over the batch ("batchmean") and multiplied by T^2; it differs from the paper's soft
cross-entropy only by the teacher's entropy, a constant with zero gradient. The weight of the hard-label term is
`hard_weight` (called alpha in some codebases, gamma in others); the soft term gets 1 - hard_weight.
"""

import math
from typing import Sequence

import torch
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
    if isinstance(temperature, Tensor) and temperature.numel() != 1:
        raise ValueError(f"temperature must be one number, got a tensor of shape {tuple(temperature.shape)}; pass a "
                         "float: one temperature softens every class alike")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be positive and finite, got {temperature}")


# --- online: peers that teach each other (Zhang et al. 2018, Deep Mutual Learning) -------------------------------

def ensemble_logits(logits: Sequence[Tensor]) -> Tensor:
    """log of the mean of the members' softmax outputs: softmax of it is the ensemble's averaged prediction."""
    probabilities = torch.stack([F.softmax(z, dim=-1) for z in logits]).mean(dim=0)
    return probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()


def mimicry_losses(logits: Sequence[Tensor]) -> Tensor:
    """Each peer's mimicry term (Zhang et al. 2018, eqs. 4 and 10), a (K,) tensor:

        1/(K-1) sum_{l != k} KL(p_l || p_k)

    The other peers' predictions p_l are targets (no gradient flows into them), so the gradient of the sum over
    peers with respect to peer k's weights is that of peer k's own term alone. A lone peer has none (zero)."""
    k = len(logits)
    if k == 1:
        return logits[0].new_zeros(1)
    return torch.stack([sum(kd_loss(own, other.detach(), 1.0) for j, other in enumerate(logits) if j != i) / (k - 1)
                        for i, own in enumerate(logits)])


def mutual_learning_losses(logits: Sequence[Tensor], labels: Tensor) -> Tensor:
    """Each peer's loss L_k = H(y, p_k) + 1/(K-1) sum_{l != k} KL(p_l || p_k) (Zhang et al. 2018, eqs. 4, 10)."""
    return torch.stack([F.cross_entropy(z, labels) for z in logits]) + mimicry_losses(logits)


# --- self: born-again generations (Furlanello et al. 2018) ---------------------------------------------------------

def confidence_weights(teacher_logits: Tensor) -> Tensor:
    """CWTM's per-sample weights: the teacher's maximum probability, normalised over the batch,
    w_s = max_i p_{i,s} / sum_u max_i p_{i,u}  (Furlanello et al. 2018, section 3.2)."""
    confidence = F.softmax(teacher_logits, dim=-1).amax(dim=-1)
    return confidence / confidence.sum()


def confidence_weighted_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor) -> Tensor:
    """CWTM: sum_s w_s H(y_s, p_student,s), w = confidence_weights(teacher) (Furlanello et al. 2018, sec. 3.2)."""
    per_sample = F.cross_entropy(student_logits, labels, reduction="none")
    return (confidence_weights(teacher_logits) * per_sample).sum()


def permute_dark_knowledge(probabilities: Tensor, generator: torch.Generator) -> Tensor:
    """DKPP's targets: each row keeps its argmax probability in place, and its other probabilities are shuffled
    among the other classes by a random permutation per row (Furlanello et al. 2018, section 3.2)."""
    n, classes = probabilities.shape
    top = probabilities.argmax(dim=-1, keepdim=True).cpu()
    # the argmax first, then the other classes: in their order (sources) and in a random order (destinations)
    in_order = torch.arange(classes, dtype=torch.float).expand(n, classes).clone().scatter_(1, top, -1.0)
    shuffled = torch.rand(n, classes, generator=generator).scatter_(1, top, -1.0)
    sources, destinations = in_order.argsort(dim=1), shuffled.argsort(dim=1)
    device = probabilities.device
    moved = probabilities.gather(1, sources.to(device))
    return torch.empty_like(probabilities).scatter_(1, destinations.to(device), moved)
