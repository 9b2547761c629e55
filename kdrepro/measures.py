"""Measures: what is read off a trained model, as specs. A measure is a frozen dataclass whose fields (and, through
the code fingerprint, whose code) key the cached record, so a run is never served a number measured another way.

    Measure(settings)(model, data) -> {"test_error": ..., ...}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from kdrepro.data import Data
from kdrepro.models import count_multiply_adds, count_parameters
from kdrepro.train import classification_metrics, evaluate, predict_logits


class Measure:
    def __call__(self, model: nn.Module, data: Data) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Classification(Measure):
    """Test error (and its count), validation error, and the network's size; with `multiply_adds`, its
    multiply-adds for one input too (FitNets' Table 5 reports them beside accuracy)."""

    multiply_adds: bool = False

    def __call__(self, model: nn.Module, data: Data) -> dict[str, Any]:
        test = evaluate(model, data.test)
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
