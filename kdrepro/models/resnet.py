"""CIFAR ResNets (He et al. 2016, section 4.2): 6n + 2 layers in three stages of n basic blocks.

The widths follow the CIFAR-100 distillation benchmark (RepDistiller): 16-16-32-64 for resnet8 ... resnet110 and
32-64-128-256 for the "x4" variants. A shortcut that changes shape is a 1x1 convolution with batch norm.
Module names, for feature taps: `stem`, `layer1`, `layer2`, `layer3` (each stage's output, after its last ReLU),
`layer2.0` (a stage's first block), `pool`, `embedding` (the flattened pooled features) and `fc` (the logits).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """relu(x' + F(x)) with F = conv-bn-relu-conv-bn and x' the input, projected when its shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(x)).relu()
        return (self.bn2(self.conv2(out)) + self.shortcut(x)).relu()


class ResNet(nn.Sequential):
    """A CIFAR ResNet of `depth` = 6n + 2 layers with stem and stage widths `channels` (four numbers)."""

    def __init__(self, depth: int, channels: tuple[int, int, int, int] = (16, 16, 32, 64), num_classes: int = 10,
                 in_channels: int = 3):
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has 6n + 2 layers (8, 14, 20, 26, 32, ...); got depth {depth}")
        if len(channels) != 4:
            raise ValueError(f"channels gives the stem's and the three stages' widths (4 numbers), got {channels}")
        blocks = (depth - 2) // 6
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            stem=nn.Sequential(conv3x3(in_channels, channels[0]), nn.BatchNorm2d(channels[0]), nn.ReLU()))
        width = channels[0]
        for stage, (out, stride) in enumerate(zip(channels[1:], (1, 2, 2)), start=1):
            stage_blocks = []
            for i in range(blocks):
                stage_blocks.append(BasicBlock(width, out, stride if i == 0 else 1))
                width = out
            layers[f"layer{stage}"] = nn.Sequential(*stage_blocks)
        layers["pool"] = nn.AdaptiveAvgPool2d(1)
        layers["embedding"] = nn.Flatten()
        layers["fc"] = nn.Linear(width, num_classes)
        super().__init__(layers)
        _initialise(self)


def resnet(depth: int, width: str = "x1", num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """resnet{depth} (16-16-32-64) or, with width "x4", resnet{depth}x4 (32-64-128-256)."""
    channels = {"x1": (16, 16, 32, 64), "x4": (32, 64, 128, 256)}
    if width not in channels:
        raise ValueError(f"width {width!r} is not one of {', '.join(channels)}")
    return ResNet(depth, channels[width], num_classes, in_channels)


def _initialise(model: nn.Module) -> None:
    """He initialisation of convolutions (He et al. 2015), unit scale and zero shift for batch norm."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
