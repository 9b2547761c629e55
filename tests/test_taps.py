import pytest
import torch
from torch import nn

from kdrepro.models import resnet
from kdrepro.taps import feature_shapes, forward_with_features


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_features_are_the_named_modules_outputs_of_the_same_pass():
    model, x = small_net(), torch.randn(5, 3)
    output, features = forward_with_features(model, x, ["1"])
    torch.testing.assert_close(features["1"], model[1](model[0](x)))
    torch.testing.assert_close(output, model(x))


def test_an_unknown_name_lists_the_names_there_are():
    with pytest.raises(KeyError, match="no module named 'layer9'.*layer1.*layer2.0"):
        forward_with_features(resnet(8), torch.zeros(1, 3, 8, 8), ["layer9"])


def test_no_hook_stays_attached_even_when_the_forward_pass_fails():
    model = small_net()
    with pytest.raises(RuntimeError):
        forward_with_features(model, torch.zeros(5, 7), ["0", "2"])  # wrong input width
    assert all(not module._forward_hooks for module in model.modules())


def test_feature_shapes_of_a_resnet_on_fashion_mnist_sized_images():
    shapes = feature_shapes(resnet(8, in_channels=1), (1, 28, 28), ["layer1", "layer2", "layer3", "embedding"])
    assert shapes == {"layer1": (16, 28, 28), "layer2": (32, 14, 14), "layer3": (64, 7, 7), "embedding": (64,)}
