"""Response-based objectives: the student learns from output distributions, a teacher's or its peers'."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrepro.data import Batch
from kdrepro.losses.response import (check_hinton_weights, confidence_weighted_loss, kd_loss, mimicry_losses,
                                     permute_dark_knowledge)
from kdrepro.objectives.base import Context, Objective


@dataclass(frozen=True)
class ResponseKD(Objective):
    """Hinton KD (Hinton, Vinyals & Dean 2015):

        L = hard_weight * H(y, p_s) + (1 - hard_weight) * T^2 KL(p_t^T || p_s^T)

    The teacher's logits come from the offline scheme (computed once where the inputs never change)."""

    temperature: float
    hard_weight: float

    def __post_init__(self) -> None:
        check_hinton_weights(self.temperature, self.hard_weight)  # fail when declared, not at the first step

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        teacher = context.require_teacher(self).outputs(batch)
        logits = model(batch.x)
        return response_terms(logits, teacher, batch.y, self.temperature, self.hard_weight)


def response_terms(logits: Tensor, teacher_logits: Tensor, labels: Tensor, temperature: float,
                   hard_weight: float) -> dict[str, Tensor]:
    """Hinton's two terms, weighted: {"ce": h H(y, p_s), "kd": (1 - h) T^2 KL(p_t^T || p_s^T)}; a zero weight
    drops its term."""
    terms = {}
    if hard_weight > 0:
        terms["ce"] = hard_weight * F.cross_entropy(logits, labels)
    if hard_weight < 1:
        terms["kd"] = (1 - hard_weight) * kd_loss(logits, teacher_logits, temperature)
    return terms


@dataclass(frozen=True)
class MutualLearning(Objective):
    """Deep Mutual Learning (Zhang et al. 2018, eqs. 4 and 10): every peer k of a `schemes.Cohort` minimises

        L_k = H(y, p_k) + 1/(K-1) sum_{l != k} KL(p_l || p_k)

    on the same batch; `fit` minimises sum_k L_k, which updates every peer at once (the paper's Algorithm 1
    updates them one after the other). The terms are per peer ("ce_1", "kl_1", ...): each peer's learning curve."""

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        peers = getattr(model, "peers", None)
        if peers is None:
            raise TypeError(f"mutual learning trains a Cohort of peers, got {type(model).__name__}")
        logits = [peer(batch.x) for peer in peers]
        mimicry = mimicry_losses(logits)
        terms = {}
        for k, (own, kl) in enumerate(zip(logits, mimicry), start=1):
            terms[f"ce_{k}"] = F.cross_entropy(own, batch.y)
            if len(logits) > 1:
                terms[f"kl_{k}"] = kl
        return terms


@dataclass(frozen=True)
class BornAgain(Objective):
    """A born-again generation learns from its predecessor, a network of its own architecture (Furlanello et al.
    2018): hard_weight H(y, p_s) + (1 - hard_weight) KL(p_teacher || p_s), at temperature 1 (BAN; with labels,
    BAN + L)."""

    hard_weight: float = 0.0

    def __post_init__(self) -> None:
        check_hinton_weights(1.0, self.hard_weight)

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        teacher = context.require_teacher(self).outputs(batch)
        return response_terms(model(batch.x), teacher, batch.y, 1.0, self.hard_weight)


@dataclass(frozen=True)
class ConfidenceWeighted(Objective):
    """CWTM (Furlanello et al. 2018, section 3.2): labels only, each example weighted by the teacher's
    confidence, sum_s w_s H(y_s, p_s) with w_s = max_i p_teacher(i|s) / sum_u max_i p_teacher(i|u)."""

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        teacher = context.require_teacher(self).outputs(batch)
        return {"cwtm": confidence_weighted_loss(model(batch.x), teacher, batch.y)}


@dataclass(frozen=True)
class DarkKnowledgePermuted(Objective):
    """DKPP (Furlanello et al. 2018, section 3.2): BAN's loss against the teacher's outputs with every
    non-argmax probability permuted among the other classes, a fresh permutation per row and batch drawn from
    the run's own generator."""

    hard_weight: float = 0.0

    def __post_init__(self) -> None:
        check_hinton_weights(1.0, self.hard_weight)

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        teacher = context.require_teacher(self).outputs(batch)
        targets = permute_dark_knowledge(F.softmax(teacher, dim=-1), context.generator)
        permuted = targets.clamp_min(torch.finfo(targets.dtype).tiny).log()
        return response_terms(model(batch.x), permuted, batch.y, 1.0, self.hard_weight)
