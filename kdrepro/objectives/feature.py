"""Feature-based objectives: the student learns from its teacher's intermediate activations, read by module name
through hooks (`kdrepro.taps`), so teacher and student stay ordinary networks.

- `Hints`: FitNets' first stage, the guided layer regressed onto the teacher's hint layer (Romero et al. 2015);
- `HintsWithLabels`: the one-stage variant of CIFAR-100 distillation code, hints and labels together;
- `AttentionTransfer`: the student matches the teacher's spatial attention maps (Zagoruyko & Komodakis 2017);
- `AttentionTransferKD`: the same on top of Hinton KD, the paper's combination.

FitNets' second stage is Hinton KD (`objectives.response.ResponseKD`): the two stages are `arms.Stage`s of one arm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor, nn

from kdrepro.data import Batch
from kdrepro.losses.feature import HintRegressor, attention_transfer_loss, hint_loss
from kdrepro.losses.response import check_hinton_weights
from kdrepro.objectives.base import Context, Objective
from kdrepro.objectives.response import response_terms
from kdrepro.taps import feature_shapes, forward_with_features

if TYPE_CHECKING:
    from kdrepro.schemes import Teacher

Layers = tuple[tuple[str, str], ...]   # (student module, teacher module) pairs


@dataclass(frozen=True)
class Hints(Objective):
    """FitNets' stage 1 (Romero et al. 2015, eq. 3): the student's layers up to the guided one, followed by a
    regressor r that the objective owns and trains, learn to predict the teacher's hint layer,

        L_HT(W_Guided, W_r) = 1/2 || u_h(x; W_Hint) - r(v_g(x; W_Guided); W_r) ||^2

    Nothing else is in the loss, so only the layers up to `guided` (and r) receive a gradient. r is the paper's
    convolution whose kernel makes the guided map the hint's size, ending with the hint layer's non-linearity
    (`activation`). `reduction`: "paper" sums each example's squared difference (eq. 3), "mean" averages every
    element (the same minimiser at a scale SGD can use). Term: {"hint": L_HT}."""

    guided: str
    hint: str
    activation: str | None = "relu"
    reduction: str = "paper"

    def modules(self, model: nn.Module, teacher: Teacher | None, input_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        return {"regressor": regressor(self, model, teacher, input_shape, "paper")}

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        _, regressed, hint = regressed_and_hint(self, model, batch, context)
        return {"hint": hint_loss(regressed, hint, self.reduction)}


@dataclass(frozen=True)
class HintsWithLabels(Objective):
    """FitNets in one stage, as CIFAR-100 distillation code runs it (not in the paper): labels and hints together,

        L = H(y, p_s) + weight * L_HT(r(v_g(x)), u_h(x))

    with r a 1x1 convolution and batch norm (the guided and hint maps must have the same size), ending with the
    hint layer's non-linearity; `reduction` as in `Hints` (that code averages, with weight 100). Terms:
    {"ce": H(y, p_s), "hint": weight * L_HT}."""

    guided: str
    hint: str
    weight: float
    activation: str | None = "relu"
    reduction: str = "paper"

    def __post_init__(self) -> None:
        check_feature_weight("weight", self.weight)

    def modules(self, model: nn.Module, teacher: Teacher | None, input_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        return {"regressor": regressor(self, model, teacher, input_shape, "1x1")}

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        logits, regressed, hint = regressed_and_hint(self, model, batch, context)
        return {"ce": F.cross_entropy(logits, batch.y),
                "hint": self.weight * hint_loss(regressed, hint, self.reduction)}


@dataclass(frozen=True)
class AttentionTransfer(Objective):
    """Activation-based attention transfer (Zagoruyko & Komodakis 2017, eq. 2), at each (student, teacher) module
    pair j of `layers`:

        L = H(y, p_s) + beta/2 sum_j || Q_S^j/||Q_S^j|| - Q_T^j/||Q_T^j|| ||_p,   Q = vec(sum_c |A_c|^p)

    `form` "paper" takes the per-example L2 distance, "code" the squared difference averaged over positions (the
    authors' code; the paper's beta = 1000 goes with it). Terms: {"ce": H(y, p_s), "at": beta/2 sum_j AT_j}."""

    layers: Layers
    beta: float
    p: float = 2.0
    form: str = "paper"

    def __post_init__(self) -> None:
        check_feature_weight("beta", self.beta)

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        logits, _, at = attention_terms(self, model, batch, context)
        return {"ce": F.cross_entropy(logits, batch.y), "at": at}


@dataclass(frozen=True)
class AttentionTransferKD(Objective):
    """Attention transfer added to Hinton KD, as the paper combines them (Zagoruyko & Komodakis 2017, Table 1):

        L = hard_weight H(y, p_s) + (1 - hard_weight) T^2 KL(p_t^T || p_s^T) + beta/2 sum_j AT_j

    with AT_j as in `AttentionTransfer`. Terms: {"ce", "kd", "at"} (a zero weight drops its Hinton term)."""

    layers: Layers
    temperature: float
    hard_weight: float
    beta: float
    p: float = 2.0
    form: str = "paper"

    def __post_init__(self) -> None:
        check_hinton_weights(self.temperature, self.hard_weight)
        check_feature_weight("beta", self.beta)

    def terms(self, model: nn.Module, batch: Batch, context: Context) -> dict[str, Tensor]:
        logits, teacher_logits, at = attention_terms(self, model, batch, context)
        return {**response_terms(logits, teacher_logits, batch.y, self.temperature, self.hard_weight), "at": at}


def check_feature_weight(name: str, weight: float) -> None:
    """Refuse, when the objective is declared, a weight the sum of terms cannot use."""
    if not (weight >= 0 and math.isfinite(weight)):
        raise ValueError(f"the feature term's {name} must be non-negative and finite, got {weight}")


def regressor(objective: Hints | HintsWithLabels, model: nn.Module, teacher: Teacher | None,
              input_shape: tuple[int, ...], kind: str) -> HintRegressor:
    """The objective's regressor from the student's guided layer to the teacher's hint layer, sized from one
    input's features."""
    frozen = Context(teacher=teacher).require_teacher(objective).model
    guided = feature_shapes(model, input_shape, [objective.guided])[objective.guided]
    hint = feature_shapes(frozen, input_shape, [objective.hint])[objective.hint]
    return HintRegressor(guided, hint, kind, objective.activation)


def regressed_and_hint(objective: Hints | HintsWithLabels, model: nn.Module, batch: Batch,
                       context: Context) -> tuple[Tensor, Tensor, Tensor]:
    """The student's logits, its regressed guided features r(v_g(x)) and the teacher's hint u_h(x)."""
    _, hints = context.require_teacher(objective).features(batch, [objective.hint])
    logits, guided = forward_with_features(model, batch.x, [objective.guided])
    return logits, context.modules["regressor"](guided[objective.guided]), hints[objective.hint]


def attention_terms(objective: AttentionTransfer | AttentionTransferKD, model: nn.Module, batch: Batch,
                    context: Context) -> tuple[Tensor, Tensor, Tensor]:
    """The student's logits, the teacher's logits (from the same pass that reads its features) and the weighted
    attention term beta/2 sum_j AT_j."""
    teacher_logits, teacher = context.require_teacher(objective).features(batch, [t for _, t in objective.layers])
    logits, student = forward_with_features(model, batch.x, [s for s, _ in objective.layers])
    total = sum(layer_pair_loss(s, t, student[s], teacher[t], objective.p, objective.form) for s, t in objective.layers)
    return logits, teacher_logits, objective.beta / 2 * total


def layer_pair_loss(student_name: str, teacher_name: str, student: Tensor, teacher: Tensor, p: float,
                    form: str) -> Tensor:
    """`attention_transfer_loss` of one pair; a shape error names the two layers, not just their shapes."""
    try:
        return attention_transfer_loss(student, teacher, p, form)
    except ValueError as error:
        raise ValueError(f"student layer {student_name!r} and teacher layer {teacher_name!r}: {error}") from None
