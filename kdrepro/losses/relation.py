"""Relation-based knowledge: relations between layers (FSP) or between examples (RKD), not the features themselves.

FSP (Yim et al. 2017): the "flow of solution procedure" between two layers, a Gram-like matrix of their channels.
RKD (Park et al. 2019): the distances and angles that a batch's embeddings form, matched by a Huber loss.
Conventions that differ between the papers and common code are explicit arguments.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def fsp_matrix(first: Tensor, second: Tensor) -> Tensor:
    """G_ij = sum_{s,t} F1_{s,t,i} F2_{s,t,j} / (h w): one (C1, C2) matrix per example (Yim et al. 2017, eq. 1).

    When the two maps differ in size, the larger is max-pooled down to the smaller, as the paper does.
    """
    if first.dim() != 4 or second.dim() != 4 or first.shape[0] != second.shape[0]:
        raise ValueError(f"an FSP matrix needs two (N, C, H, W) maps of one batch, got {tuple(first.shape)} and "
                         f"{tuple(second.shape)}")
    size = (min(first.shape[2], second.shape[2]), min(first.shape[3], second.shape[3]))
    first, second = _pool_to(first, size), _pool_to(second, size)
    return torch.einsum("nihw,njhw->nij", first, second) / (size[0] * size[1])


def fsp_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """||G^T - G^S||_2^2 of one layer pair: the squared Frobenius norm per example, averaged over the batch
    (Yim et al. 2017, eq. 2; the weights lambda_i and the sum over pairs are the caller's)."""
    if student.shape != teacher.shape:
        raise ValueError(f"FSP matrices differ in shape: student {tuple(student.shape)}, teacher "
                         f"{tuple(teacher.shape)}; each pair's channel counts must match the teacher's")
    return (teacher - student).pow(2).flatten(1).sum(dim=1).mean()


def rkd_distances(embeddings: Tensor) -> Tensor:
    """psi_D(t_i, t_j) = ||t_i - t_j||_2 / mu for every pair of the batch, mu the mean of the non-zero distances
    (Park et al. 2019, eq. 4): the normalisation makes the relation blind to the embedding's scale."""
    distances = _pairwise_distances(embeddings)
    positive = distances[distances > 0]
    if positive.numel() == 0:
        raise ValueError("every embedding of the batch is the same point: distances cannot be normalised")
    return distances / positive.mean()


def rkd_angles(embeddings: Tensor) -> Tensor:
    """psi_A(t_i, t_j, t_k) = <e_ij, e_kj> with e_ij = (t_i - t_j) / ||t_i - t_j||: the cosine of the angle at t_j
    of every triplet, an (N, N, N) tensor indexed [j, i, k] (Park et al. 2019, eq. 6)."""
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be (N, D), got {tuple(embeddings.shape)}")
    directions = F.normalize(embeddings.unsqueeze(0) - embeddings.unsqueeze(1), dim=2)  # [j, i] = e_ij
    return directions @ directions.transpose(1, 2)


def rkd_distance_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """L_RKD-D = sum_{(i,j)} l_delta(psi_D(t_i, t_j), psi_D(s_i, s_j)), l_delta the Huber loss with delta 1
    (Park et al. 2019, eq. 5), averaged over all N^2 ordered pairs as the authors' code does."""
    _check_batch(student, teacher)
    return F.smooth_l1_loss(rkd_distances(student), rkd_distances(teacher))


def rkd_angle_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """L_RKD-A = sum_{(i,j,k)} l_delta(psi_A(t_i, t_j, t_k), psi_A(s_i, s_j, s_k)) (Park et al. 2019, eq. 7),
    averaged over all N^3 ordered triplets as the authors' code does."""
    _check_batch(student, teacher)
    return F.smooth_l1_loss(rkd_angles(student), rkd_angles(teacher))


def rkd_loss(student: Tensor, teacher: Tensor, distance_weight: float, angle_weight: float) -> Tensor:
    """lambda_D L_RKD-D + lambda_A L_RKD-A. The paper's weights: 1 and 2 for metric learning, 25 and 50 for
    classification (Park et al. 2019, section 4); a zero weight skips its term."""
    return sum(rkd_terms(student, teacher, distance_weight, angle_weight).values())


def rkd_terms(student: Tensor, teacher: Tensor, distance_weight: float, angle_weight: float) -> dict[str, Tensor]:
    """The two weighted terms of `rkd_loss`, {"rkd_distance": lambda_D L_RKD-D, "rkd_angle": lambda_A L_RKD-A},
    each embedding flattened to (N, D); a zero weight leaves its term out."""
    check_rkd_weights(distance_weight, angle_weight)
    student, teacher = student.flatten(1), teacher.flatten(1)
    terms = {}
    if distance_weight:
        terms["rkd_distance"] = distance_weight * rkd_distance_loss(student, teacher)
    if angle_weight:
        terms["rkd_angle"] = angle_weight * rkd_angle_loss(student, teacher)
    return terms


def check_rkd_weights(distance_weight: float, angle_weight: float) -> None:
    if not (_is_weight(distance_weight) and _is_weight(angle_weight) and distance_weight + angle_weight > 0):
        raise ValueError(f"RKD weights must be non-negative, finite and not both zero, got distance "
                         f"{distance_weight}, angle {angle_weight}")


def check_fsp_weights(weights: Sequence[float], pair_count: int) -> None:
    """The lambda_i of FSP: one non-negative, finite weight per layer pair."""
    if len(weights) != pair_count or not all(_is_weight(w) for w in weights):
        raise ValueError(f"FSP needs one non-negative weight per layer pair, each finite: {pair_count} pairs, "
                         f"weights {list(weights)}")


def _is_weight(value: float) -> bool:
    return value >= 0 and math.isfinite(value)  # False for NaN, which every comparison fails


def _pool_to(features: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(features.shape[2:]) == size:
        return features
    return F.adaptive_max_pool2d(features, size)


def _pairwise_distances(embeddings: Tensor) -> Tensor:
    """Euclidean distances with a zero diagonal, whose gradient stays finite where two points coincide."""
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be (N, D), got {tuple(embeddings.shape)}")
    squared = embeddings.pow(2).sum(dim=1)
    products = squared.unsqueeze(0) + squared.unsqueeze(1) - 2 * embeddings @ embeddings.T
    distances = products.clamp_min(1e-12).sqrt()
    return distances * (1 - torch.eye(len(embeddings), device=embeddings.device, dtype=embeddings.dtype))


def _check_batch(student: Tensor, teacher: Tensor) -> None:
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"student and teacher embed different batches: {student.shape[0]} and {teacher.shape[0]} "
                         "examples")
