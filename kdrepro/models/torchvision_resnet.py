"""ImageNet ResNets as torchvision builds them (He et al. 2016, Table 1): ResNet-18 and ResNet-50, the student and
teacher of Park et al. 2019's metric learning, whose code (lenscloth/RKD) wraps torchvision's networks and puts a
linear embedding on the pooled features; here `fc` is that linear layer, with `num_classes` outputs.

Always built with weights=None: ImageNet-pretrained weights would be a download. The modules keep torchvision's
names (`conv1`, `bn1`, `relu`, `maxpool`, `layer1` ... `layer4`, `avgpool`, `fc`), so a torchvision state dict
loads as it is, and add `embedding` (the flattened pooled features) for feature taps, as the CIFAR ResNets have.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

STEM_WIDTH = 64  # conv1 of every torchvision ResNet: 64 filters of 7x7, stride 2


def torchvision_resnet(depth: int, num_classes: int = 10, in_channels: int = 3) -> nn.Sequential:
    """torchvision's resnet{depth} (18 or 50), freshly initialised, as a sequence of named modules."""
    import torchvision  # the CIFAR networks do not need it

    builders = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}
    if depth not in builders:
        raise ValueError(f"torchvision ResNet depth must be one of {', '.join(map(str, builders))}, got {depth}")
    net = builders[depth](weights=None, num_classes=num_classes)
    if in_channels != 3:  # grey images: the same stem for another number of input channels
        net.conv1 = nn.Conv2d(in_channels, STEM_WIDTH, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")
    layers: OrderedDict[str, nn.Module] = OrderedDict((name, getattr(net, name)) for name in names)
    layers["embedding"] = nn.Flatten()
    layers["fc"] = net.fc
    return nn.Sequential(layers)
