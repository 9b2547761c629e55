"""Measures: what is read off a trained model, as specs. A measure is a frozen dataclass whose fields (and, through
the code fingerprint, whose code) key the cached record, so a run is never served a number measured another way.

    Measure(settings)(model, data) -> {"test_error": ..., ...}
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrepro.arms import Arm
from kdrepro.data import Data, Split
from kdrepro.losses.feature import attention_transfer_loss
from kdrepro.losses.response import ensemble_logits
from kdrepro.models import count_multiply_adds, count_parameters
from kdrepro.schemes import Cohort
from kdrepro.seeds import generator
from kdrepro.taps import forward_with_features
from kdrepro.train import classification_metrics, evaluate, predict_logits


class Measure:
    def __call__(self, model: nn.Module, data: Data) -> dict[str, Any]:
        raise NotImplementedError

    def at(self, seed: int) -> Measure:
        """This measure for a run at `seed`: itself, unless it draws random numbers (then from that seed's
        streams, so two arms measured at one seed see the same draws)."""
        return self


class ReadsArms(Measure):
    """A measure that reads other arms' trained models too: `reads()` names those arms, which the experiment trains
    (or reads from its cache) at the run's seed and passes in, in that order, after the run's own model."""

    def reads(self) -> tuple[Arm, ...]:
        raise NotImplementedError

    def __call__(self, model: nn.Module, data: Data, *others: nn.Module) -> dict[str, Any]:
        raise NotImplementedError


class TeacherMeasure(ReadsArms):
    """A measure that compares the model with a teacher: its field `teacher` is that teacher's arm."""

    teacher: Arm

    def reads(self) -> tuple[Arm, ...]:
        return (self.teacher,)

    def __call__(self, model: nn.Module, data: Data, teacher: nn.Module) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Ensemble(ReadsArms):
    """`measure` of the ensemble of the run's model and the models of `others` at the run's seed (`schemes.Cohort`:
    the average of their softmax outputs), as Furlanello et al. 2018 ensemble BAN's generations (BANE)."""

    others: tuple[Arm, ...]
    measure: Measure

    def reads(self) -> tuple[Arm, ...]:
        return self.others

    def __call__(self, model: nn.Module, data: Data, *others: nn.Module) -> dict[str, Any]:
        return self.measure(Cohort([*others, model]), data)


@dataclass(frozen=True)
class Classification(Measure):
    """Test error (and its count), validation error, and the network's size; with `multiply_adds`, its
    multiply-adds for one input too (FitNets' Table 5 reports them beside accuracy)."""

    multiply_adds: bool = False

    def __call__(self, model: nn.Module, data: Data, test_logits: Tensor | None = None) -> dict[str, Any]:
        """`test_logits`: the model's logits on the test set when the caller has them already (`PeerMean`)."""
        test = evaluate(model, data.test) if test_logits is None else classification_metrics(test_logits,
                                                                                             data.test.y)
        result = {"test_error": test["error"], "test_errors": test["errors"],
                  "val_error": evaluate(model, data.val)["error"] if len(data.val) else float("nan"),
                  "parameters": count_parameters(model)}
        if self.multiply_adds:
            result["multiply_adds"] = count_multiply_adds(model, data.input_shape)
        return result


def class_errors(logits: Tensor, labels: Tensor, label: int, prefix: str) -> dict[str, float]:
    """The error (and count) on the examples of one class, as "<prefix>_error" and "<prefix>_errors"."""
    rows = labels == label
    metrics = classification_metrics(logits[rows], labels[rows])
    return {f"{prefix}_error": metrics["error"], f"{prefix}_errors": metrics["errors"]}


@dataclass(frozen=True)
class OmittedClass(Measure):
    """`Classification`, plus the error on one class: the class Hinton et al.'s dark-knowledge experiment leaves
    out of the transfer set (section 3), as "omitted_error" and "omitted_errors"."""

    omitted_class: int

    def __call__(self, model: nn.Module, data: Data) -> dict[str, Any]:
        logits = predict_logits(model, data.test.x)
        return {**Classification()(model, data), **class_errors(logits, data.test.y, self.omitted_class, "omitted")}


@dataclass(frozen=True)
class BiasCorrected(Measure):
    """The paper's fix for a class never seen in the transfer set: raise its output bias by the shift (on a grid
    of `step` up to `largest`) with the fewest validation errors, then measure the test set as `OmittedClass`
    does; the test set never chooses the shift (Hinton et al. 2015, section 3)."""

    omitted_class: int
    largest: float = 15.0
    step: float = 0.1

    def __call__(self, model: nn.Module, data: Data) -> dict[str, Any]:
        c = self.omitted_class
        val_logits, test_logits = predict_logits(model, data.val.x), predict_logits(model, data.test.x)
        shifts = torch.arange(0, self.largest + self.step / 10, self.step)
        errors = [classification_metrics(shift_column(val_logits, c, float(s)), data.val.y)["errors"] for s in shifts]
        best = float(shifts[min(range(len(shifts)), key=errors.__getitem__)])
        corrected = shift_column(test_logits, c, best)
        overall = classification_metrics(corrected, data.test.y)
        return {"bias_shift": round(best, 1), "test_error": overall["error"], "test_errors": overall["errors"],
                **class_errors(corrected, data.test.y, c, "omitted")}


def shift_column(logits: Tensor, column: int, amount: float) -> Tensor:
    shifted = logits.clone()
    shifted[:, column] += amount
    return shifted


@dataclass(frozen=True)
class AttentionDistance(TeacherMeasure):
    """`Classification` with multiply-adds, plus how far the model's attention maps lie from its teacher's on the
    test set (its first `images` images; None: all of it): the paper's distance || Q_S/||Q_S|| - Q_T/||Q_T|| ||_2
    (Zagoruyko & Komodakis 2017, eq. 2, p = 2), averaged over images and the (student, teacher) module pairs
    `layers`: 0 for the same maps, at most 2."""

    layers: tuple[tuple[str, str], ...]
    teacher: Arm
    images: int | None = None

    def __call__(self, model: nn.Module, data: Data, teacher: nn.Module) -> dict[str, Any]:
        return {**Classification(multiply_adds=True)(model, data),
                "attention_distance": attention_distance(model, teacher, data.test.x[:self.images], self.layers)}


@torch.no_grad()
def attention_distance(model: nn.Module, teacher: nn.Module, x: Tensor, layers: tuple[tuple[str, str], ...],
                       chunk: int = 1000) -> float:
    """The paper-form attention distance between `model` and `teacher` on the images x, averaged over images and
    layer pairs; in chunks, so a test set's activations never sit in memory at once."""
    model.eval()
    teacher.eval()
    total = 0.0
    for start in range(0, len(x), chunk):
        _, student_features = forward_with_features(model, x[start: start + chunk], [s for s, _ in layers])
        _, teacher_features = forward_with_features(teacher, x[start: start + chunk], [t for _, t in layers])
        total += sum(float(attention_transfer_loss(student_features[s], teacher_features[t], form="paper"))
                     * len(student_features[s]) for s, t in layers)
    return total / (len(x) * len(layers))


# --- Born-Again Networks: what a student of its teacher's outputs alone inherits ------------------------------------

@dataclass(frozen=True)
class TrainingError(Measure):
    """`Classification`, plus the error on the training split ("train_error"): where a teacher errs on its own
    training images, a student of its outputs alone learns the error (Furlanello et al. 2018)."""

    def __call__(self, model: nn.Module, data: Data, test_logits: Tensor | None = None) -> dict[str, Any]:
        return {**Classification()(model, data, test_logits), "train_error": evaluate(model, data.train)["error"]}


# --- Deep Mutual Learning: a cohort's peers, and the width of a minimum ------------------------------------------

PARTS = "parts"   # a reading's rows of its own, {suffix: reading}: `Experiment.run` records them as "<arm>_<suffix>"


@dataclass(frozen=True)
class PeerMean(Measure):
    """`measure` of every peer of a trained `schemes.Cohort`: each fraction it reads (an error, a loss rise: the
    float readings; counts and lists are left out) averaged over the peers, the test error of the cohort's
    ensemble (the average of its peers' softmax outputs) as "ensemble_test_error", and each peer's own reading as
    a part, k from 1 (its row, "<cohort>_<k>"): one measurement of each peer, and one pass of it over the test
    set, serve both (the measure takes the peer's test logits: `Classification` and the measures built on it)."""

    measure: Classification | TrainingError | WeightNoise

    def __call__(self, model: nn.Module, data: Data) -> dict[str, Any]:
        logits = [predict_logits(peer, data.test.x) for peer in model.peers]
        each = [self.measure(peer, data, test_logits) for peer, test_logits in zip(model.peers, logits)]
        mean = {name: sum(reading[name] for reading in each) / len(each) for name, value in each[0].items()
                if isinstance(value, float)}
        return {**mean, "ensemble_test_error": classification_metrics(ensemble_logits(logits), data.test.y)["error"],
                PARTS: {str(k): reading for k, reading in enumerate(each, start=1)}}

    def at(self, seed: int) -> Measure:
        return replace(self, measure=self.measure.at(seed))


@dataclass(frozen=True)
class WeightNoise(Measure):
    """`TrainingError` (whether the network fits its training set), plus the probe of a minimum's width (Zhang et
    al. 2018, section 4.4): the rise of the training loss on the first `images` training images when every weight
    gets Gaussian noise of std sigma, for each of `sigmas` ("noise_loss_rises"), and at `sigma`, the one a claim
    reads ("noise_loss_rise"). The noise is drawn from the run's seed: models measured at one seed see the same
    noise (their comparison is paired)."""

    sigmas: tuple[float, ...]
    sigma: float
    draws: int
    images: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sigma not in self.sigmas:
            raise ValueError(f"WeightNoise(sigma={self.sigma}) must be one of sigmas={self.sigmas}")

    def __call__(self, model: nn.Module, data: Data, test_logits: Tensor | None = None) -> dict[str, Any]:
        images = data.train.subset(torch.arange(min(self.images, len(data.train)), device=data.train.y.device))
        rises = [loss_under_weight_noise(model, images, sigma, self.draws, self.seed) for sigma in self.sigmas]
        return {**TrainingError()(model, data, test_logits), "noise_loss_rise": rises[self.sigmas.index(self.sigma)],
                "noise_loss_rises": rises}

    def at(self, seed: int) -> Measure:
        return replace(self, seed=seed)


@torch.no_grad()
def loss_under_weight_noise(model: nn.Module, split: Split, sigma: float, draws: int, seed: int) -> float:
    """Mean rise of the cross-entropy on `split` (in evaluation mode) when every weight gets independent
    N(0, sigma^2) noise, over `draws` noise samples; the model is left unchanged. The samples come from the stream
    "weight noise" of `seed`, the same for every sigma: the curves over sigma are smooth, one draw scaled."""
    clean = F.cross_entropy(predict_logits(model, split.x), split.y).item()
    noise = generator(seed, "weight noise", device=split.x.device)
    saved = [p.detach().clone() for p in model.parameters()]
    rises = []
    for _ in range(draws):
        for p in model.parameters():
            p.add_(sigma * torch.randn(p.shape, generator=noise, device=p.device))
        rises.append(F.cross_entropy(predict_logits(model, split.x), split.y).item() - clean)
        for p, original in zip(model.parameters(), saved):
            p.copy_(original)
    return sum(rises) / draws
