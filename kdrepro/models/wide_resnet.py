"""Wide residual networks WRN-d-k (Zagoruyko & Komodakis 2016): d = 6n + 4 layers, stage widths 16k, 32k, 64k,
pre-activation blocks (bn-relu-conv). Attention transfer reads the three groups' outputs.

Module names, for feature taps: `conv1`, `block1`, `block2`, `block3` (each group's output, before the
pre-activation of the next), `relu` (the last activation), `pool`, `embedding`, `fc`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn

from kdrepro.models.resnet import _initialise, conv3x3


class WideBlock(nn.Module):
    """x' + conv(relu(bn(conv(relu(bn(x)))))) with x' the input, projected by a 1x1 convolution when its shape
    changes (the projection reads the pre-activated input, as in the authors' code)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.dropout = dropout
        self.projection = None
        if stride != 1 or in_channels != out_channels:
            self.projection = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = self.bn1(x).relu()
        out = self.conv1(activated)
        out = F.dropout(self.bn2(out).relu(), self.dropout, self.training)
        shortcut = x if self.projection is None else self.projection(activated)
        return self.conv2(out) + shortcut


class WideResNet(nn.Sequential):
    """WRN-`depth`-`widen`; `base` is the narrowest stage's width at k = 1 (16 in the paper)."""

    def __init__(self, depth: int, widen: int, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.0,
                 base: int = 16):
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"a wide ResNet has 6n + 4 layers (10, 16, 22, 28, 40, ...); got depth {depth}")
        if widen < 1 or base < 1:
            raise ValueError(f"widen factor and base width must be at least 1, got {widen} and {base}")
        blocks = (depth - 4) // 6
        widths = [base * widen, 2 * base * widen, 4 * base * widen]
        layers: OrderedDict[str, nn.Module] = OrderedDict(conv1=conv3x3(in_channels, base))
        width = base
        for group, (out, stride) in enumerate(zip(widths, (1, 2, 2)), start=1):
            group_blocks = []
            for i in range(blocks):
                group_blocks.append(WideBlock(width, out, stride if i == 0 else 1, dropout))
                width = out
            layers[f"block{group}"] = nn.Sequential(*group_blocks)
        layers["bn"] = nn.BatchNorm2d(width)
        layers["relu"] = nn.ReLU()
        layers["pool"] = nn.AdaptiveAvgPool2d(1)
        layers["embedding"] = nn.Flatten()
        layers["fc"] = nn.Linear(width, num_classes)
        super().__init__(layers)
        _initialise(self)


def wide_resnet(depth: int, widen: int, num_classes: int = 10, in_channels: int = 3, base: int = 16) -> WideResNet:
    return WideResNet(depth, widen, num_classes, in_channels, base=base)
