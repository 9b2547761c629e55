"""Intermediate features read by module name through forward hooks, so models stay ordinary `nn.Module`s.

The hooks live only for the one forward pass that needs them: nothing is left attached to a model.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


def find_modules(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """The submodules called `names` (as `model.named_modules()` spells them, e.g. "layer2" or "layer2.0")."""
    modules = dict(model.named_modules())
    missing = [name for name in names if name not in modules or name == ""]
    if missing:
        available = ", ".join(name for name in modules if name)
        raise KeyError(f"{type(model).__name__} has no module named {', '.join(map(repr, missing))}; "
                       f"its modules are: {available}")
    return {name: modules[name] for name in names}


def forward_with_features(model: nn.Module, x: Tensor, names: Sequence[str]) -> tuple[Tensor, dict[str, Tensor]]:
    """The model's output for `x` and the outputs of the modules called `names` during that same pass."""
    features: dict[str, Tensor] = {}

    def keep(name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            features[name] = output
        return hook

    handles = [module.register_forward_hook(keep(name)) for name, module in find_modules(model, names).items()]
    try:
        output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return output, features


@torch.no_grad()
def feature_shapes(model: nn.Module, input_shape: tuple[int, ...], names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """The shape (without the batch dimension) of each named module's output for one input of `input_shape`."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        _, features = forward_with_features(model, torch.zeros(1, *input_shape, device=device), names)
    finally:
        model.train(was_training)
    return {name: tuple(feature.shape[1:]) for name, feature in features.items()}
