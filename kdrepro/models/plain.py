"""Plain (non-residual) convolutional networks: FitNets' wide-shallow teachers and thin-deep students.

FitNets (Romero et al. 2015) studies depth without shortcuts, where plain backpropagation struggles as layers are
added; a residual network would hide exactly that effect. Maxout units are replaced by ReLU (see the departures).
Module names: `conv1`, `relu1`, `conv2`, `relu2`, ... numbered through the whole network, `pool1`, `pool2`, ...
after each stage, then `gap`, `embedding`, `fc`.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


def plain_cnn(stages: tuple[tuple[int, ...], ...], num_classes: int = 10, in_channels: int = 3,
              batch_norm: bool = False) -> nn.Sequential:
    """3x3 convolutions with the widths of each stage (e.g. ((16, 16, 16), (32, 32, 32), (48, 48, 48))), a 2x2
    max-pool after each stage, global average pooling and one linear layer."""
    if not stages or any(not stage or min(stage) < 1 for stage in stages):
        raise ValueError(f"stages must be non-empty tuples of positive widths, got {stages}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    width, index = in_channels, 0
    for stage, widths in enumerate(stages, start=1):
        for out in widths:
            index += 1
            layers[f"conv{index}"] = nn.Conv2d(width, out, 3, padding=1, bias=not batch_norm)
            if batch_norm:
                layers[f"bn{index}"] = nn.BatchNorm2d(out)
            layers[f"relu{index}"] = nn.ReLU()
            width = out
        layers[f"pool{stage}"] = nn.MaxPool2d(2)
    layers["gap"] = nn.AdaptiveAvgPool2d(1)
    layers["embedding"] = nn.Flatten()
    layers["fc"] = nn.Linear(width, num_classes)
    model = nn.Sequential(layers)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model
