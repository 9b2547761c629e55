"""Every architecture the papers and the CIFAR-100 benchmark name, built by name."""

from __future__ import annotations

from functools import partial
from typing import Callable

from torch import nn

from kdrepro.models.mlp import mlp
from kdrepro.models.plain import plain_cnn
from kdrepro.models.resnet import ResNet, resnet
from kdrepro.models.torchvision_resnet import torchvision_resnet
from kdrepro.models.wide_resnet import wide_resnet

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    **{f"resnet{d}": partial(resnet, d) for d in (8, 14, 20, 26, 32, 44, 56, 110)},
    "resnet8x4": partial(resnet, 8, "x4"),
    "resnet32x4": partial(resnet, 32, "x4"),
    **{f"wrn_{d}_{k}": partial(wide_resnet, d, k) for d in (16, 40) for k in (1, 2)},
    # FitNet 1 of Romero et al. 2015 (CIFAR-10, 11 layers): three stages of 16-16-16, 32-32-32, 48-48-48 3x3 convs;
    # our head is global pooling + one linear layer instead of the paper's maxout layers
    "fitnet1": partial(plain_cnn, ((16, 16, 16), (32, 32, 32), (48, 48, 48))),
    # the ImageNet ResNets of Park et al. 2019's metric learning (teacher ResNet-50, students ResNet-18), from scratch
    "tv_resnet18": partial(torchvision_resnet, 18),
    "tv_resnet50": partial(torchvision_resnet, 50),
}


# families for the small variants a profile describes as data, e.g. {"family": "wide_resnet", "depth": 10,
# "widen": 2, "base": 8}: a JSON-able spec that can key a cache entry
FAMILIES: dict[str, Callable[..., nn.Module]] = {"resnet": ResNet, "wide_resnet": wide_resnet, "plain_cnn": plain_cnn}
# families whose first layer depends on the whole input shape, not only its channels
SHAPED_FAMILIES: dict[str, Callable[..., nn.Module]] = {"mlp": mlp}


def build(architecture: str | dict, num_classes: int = 10, in_channels: int = 3,
          input_shape: tuple[int, ...] | None = None) -> nn.Module:
    """A freshly initialised network for `num_classes` classes and `in_channels`-channel images of any size:
    `architecture` is a published name ("resnet32x4") or a spec {"family": ..., **its arguments}. An "mlp"
    spec ({"family": "mlp", "hidden": [800, 800], "dropout": 0.5}) also needs the `input_shape`."""
    if isinstance(architecture, dict):
        spec = dict(architecture)
        family = spec.pop("family", None)
        if family in SHAPED_FAMILIES:
            if input_shape is None:
                raise ValueError(f"a {family!r} network needs the input_shape of its inputs")
            return SHAPED_FAMILIES[family](input_shape, num_classes=num_classes, **spec)
        if family not in FAMILIES:
            raise ValueError(f"unknown architecture family {family!r}; "
                             f"choose one of {', '.join([*FAMILIES, *SHAPED_FAMILIES])}")
        return FAMILIES[family](**spec, num_classes=num_classes, in_channels=in_channels)
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](num_classes=num_classes, in_channels=in_channels)
