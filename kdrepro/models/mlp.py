"""Multilayer perceptrons: the models of Hinton et al. 2015, section 3."""

from __future__ import annotations

from collections import OrderedDict
from math import prod

from torch import nn


def mlp(input_shape: tuple[int, ...], hidden: tuple[int, ...] | list[int], num_classes: int,
        dropout: float = 0.0, input_dropout: float = 0.0) -> nn.Sequential:
    """A ReLU multilayer perceptron, e.g. Hinton et al.'s 784-1200-1200-10 teacher (dropout 0.5 on hidden units,
    0.2 on inputs, as in Hinton et al. 2012) or the 784-800-800-10 student (no regularisation).

    Layers are named `fc1`, `fc2`, ..., `logits`, so a hook can read `relu1` or `fc2` by name.
    """
    for p in (dropout, input_dropout):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probabilities must be in [0, 1), got {p}")
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    if input_dropout:
        layers["drop0"] = nn.Dropout(input_dropout)
    width = prod(input_shape)
    for i, units in enumerate(hidden, start=1):
        layers[f"fc{i}"] = nn.Linear(width, units)
        layers[f"relu{i}"] = nn.ReLU()
        if dropout:
            layers[f"drop{i}"] = nn.Dropout(dropout)
        width = units
    layers["logits"] = nn.Linear(width, num_classes)
    return nn.Sequential(layers)
