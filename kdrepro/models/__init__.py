"""Models stay ordinary `nn.Module`s; losses that need intermediate features read them by module name
(`kdrepro.taps`). `build(name, ...)` makes any model the papers name; the size helpers report what Table 5 of
FitNets reports beside accuracy."""

from kdrepro.models.measure import count_multiply_adds, count_parameters
from kdrepro.models.mlp import mlp
from kdrepro.models.plain import plain_cnn
from kdrepro.models.registry import ARCHITECTURES, build
from kdrepro.models.resnet import ResNet, resnet
from kdrepro.models.wide_resnet import WideResNet, wide_resnet

__all__ = ["ARCHITECTURES", "ResNet", "WideResNet", "build", "count_multiply_adds", "count_parameters", "mlp",
           "plain_cnn", "resnet", "wide_resnet"]
