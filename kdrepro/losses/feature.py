"""Feature-based knowledge: the teacher's intermediate activations.

FitNets (Romero et al. 2015): a regressor maps the student's guided layer onto the teacher's hint layer.
Attention transfer (Zagoruyko & Komodakis 2017): the student matches the teacher's spatial attention maps.
Conventions that differ between the papers and common code are explicit arguments.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn


class HintRegressor(nn.Module):
    """r(v_g; W_r): the guided layer's features (C_g, N_g, N_g) reshaped into the hint's (C_h, N_h, N_h).

    kind="paper": one convolution without padding whose kernel is k = N_g - N_h + 1, so that N_g - k + 1 = N_h,
    followed by the hint layer's non-linearity (Romero et al. 2015, section 3.1; `activation` "relu" when the
    hint is a ReLU output, None otherwise). kind="1x1": a 1x1 convolution and batch norm, the form common in
    CIFAR-100 distillation code; the spatial sizes must already agree.
    """

    def __init__(self, guided_shape: tuple[int, int, int], hint_shape: tuple[int, int, int], kind: str = "paper",
                 activation: str | None = "relu"):
        super().__init__()
        (c_g, h_g, w_g), (c_h, h_h, w_h) = guided_shape, hint_shape
        if kind == "paper":
            if h_g < h_h or w_g < w_h:
                raise ValueError(f"the guided layer's map {h_g}x{w_g} is smaller than the hint's {h_h}x{w_h}; a "
                                 "convolutional regressor can only shrink it: guide an earlier student layer")
            self.conv = nn.Conv2d(c_g, c_h, (h_g - h_h + 1, w_g - w_h + 1))
            self.norm: nn.Module = nn.Identity()
        elif kind == "1x1":
            if (h_g, w_g) != (h_h, w_h):
                raise ValueError(f"a 1x1 regressor keeps the map's size, but the guided layer is {h_g}x{w_g} and "
                                 f"the hint {h_h}x{w_h}; use kind='paper'")
            self.conv = nn.Conv2d(c_g, c_h, 1, bias=False)
            self.norm = nn.BatchNorm2d(c_h)
        else:
            raise ValueError(f"kind must be 'paper' or '1x1', got {kind!r}")
        if activation not in ("relu", None):
            raise ValueError(f"activation must be 'relu' or None, got {activation!r}")
        self.activation = activation

    def forward(self, guided: Tensor) -> Tensor:
        out = self.norm(self.conv(guided))
        return out.relu() if self.activation == "relu" else out


def hint_loss(regressed: Tensor, hint: Tensor, reduction: str = "paper") -> Tensor:
    """L_HT = 1/2 || u_h(x) - r(v_g(x)) ||^2 (Romero et al. 2015, eq. 3).

    reduction="paper": half the squared norm of each example's difference, averaged over the batch.
    reduction="mean": the squared difference averaged over every element (CIFAR-100 code; there weighted by 100).
    """
    _check_same_shape(regressed, hint, "regressed guided features", "hint features")
    squared = (regressed - hint).pow(2)
    if reduction == "paper":
        return 0.5 * squared.flatten(1).sum(dim=1).mean()
    if reduction == "mean":
        return squared.mean()
    raise ValueError(f"reduction must be 'paper' or 'mean', got {reduction!r}")


def attention_map(features: Tensor, p: float = 2) -> Tensor:
    """Q = vec(sum_c |A_c|^p), L2-normalised per example (Zagoruyko & Komodakis 2017, section 3.1 and eq. 2).

    The authors' code takes the mean over channels instead of the sum; after normalisation the two are equal.
    """
    if not (p > 0 and math.isfinite(p)):
        raise ValueError(f"the attention exponent p must be positive and finite, got {p}; the paper uses p = 2 "
                         "(p = 0 makes every map uniform, so the loss is 0 whatever the student does)")
    if features.dim() != 4:
        raise ValueError(f"attention maps need (N, C, H, W) activations, got shape {tuple(features.shape)}")
    return F.normalize(features.abs().pow(p).sum(dim=1).flatten(1), dim=1)


def attention_transfer_loss(student: Tensor, teacher: Tensor, p: float = 2, form: str = "code") -> Tensor:
    """The distance between student and teacher attention maps of one layer pair; beta/2 and the sum over layer
    pairs are the caller's (Zagoruyko & Komodakis 2017, eq. 2, with beta = 1000).

    form="paper": || Q_S/||Q_S|| - Q_T/||Q_T|| ||_2 per example, averaged over the batch.
    form="code": the squared difference averaged over the batch and every position (the authors' code).
    Maps of different spatial sizes are rejected rather than pooled: pair layers of the same resolution.
    """
    if student.shape[0] != teacher.shape[0] or student.shape[-2:] != teacher.shape[-2:]:
        raise ValueError(f"attention maps differ in size: student activations {tuple(student.shape)}, teacher "
                         f"{tuple(teacher.shape)}; pair layers of the same spatial resolution")
    difference = attention_map(student, p) - attention_map(teacher, p)
    if form == "paper":
        return difference.norm(dim=1).mean()
    if form == "code":
        return difference.pow(2).mean()
    raise ValueError(f"form must be 'paper' or 'code', got {form!r}")


def _check_same_shape(a: Tensor, b: Tensor, a_name: str, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} {tuple(a.shape)} and {b_name} {tuple(b.shape)} differ in shape")
