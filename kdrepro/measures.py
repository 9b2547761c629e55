"""Measures: what is read off a trained model, as specs. A measure is a frozen dataclass whose fields (and, through
the code fingerprint, whose code) key the cached record, so a run is never served a number measured another way.

    Measure(settings)(model, data) -> {"test_error": ..., ...}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
