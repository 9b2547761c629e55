import pytest
import torch
from torch import nn

from kdrepro.models import ARCHITECTURES, build, count_multiply_adds, count_parameters, plain_cnn, resnet, wide_resnet

# He et al. 2016, Table 6 (CIFAR-10): 0.27M, 0.46M, 0.66M, 0.85M, 1.7M parameters, with parameter-free shortcuts
# Zagoruyko & Komodakis 2017, Table 1 (CIFAR-10): WRN-16-1 0.2M, WRN-16-2 0.7M, WRN-40-1 0.6M, WRN-40-2 2.2M
PUBLISHED_MILLIONS = {"resnet20": (0.27, 2), "resnet32": (0.46, 2), "resnet44": (0.66, 2), "resnet56": (0.85, 2),
                      "resnet110": (1.7, 1), "wrn_16_1": (0.2, 1), "wrn_16_2": (0.7, 1), "wrn_40_1": (0.6, 1),
                      "wrn_40_2": (2.2, 1)}


@pytest.mark.parametrize("name", PUBLISHED_MILLIONS)
def test_parameter_counts_match_the_published_ones(name):
    published, digits = PUBLISHED_MILLIONS[name]
    model = build(name, num_classes=10)
    # our ResNets project a shortcut that changes shape by a 1x1 convolution (as the CIFAR-100 benchmark's do);
    # He et al.'s CIFAR ResNets pad with zeros instead, so their counts leave the projections out
    projections = sum(count_parameters(m.shortcut) for m in model.modules() if hasattr(m, "shortcut"))
    assert round((count_parameters(model) - projections) / 1e6, digits) == published


def test_resnet8x4_parameters_counted_by_hand():
    def conv(i, o, k=3):
        return i * o * k * k

    def bn(c):
        return 2 * c

    stem = conv(3, 32) + bn(32)
    stages = sum(conv(i, o) + bn(o) + conv(o, o) + bn(o) + conv(i, o, 1) + bn(o)
                 for i, o in ((32, 64), (64, 128), (128, 256)))
    fc = 256 * 100 + 100
    assert count_parameters(build("resnet8x4", num_classes=100)) == stem + stages + fc  # 1.23M


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_architecture_takes_grey_28px_and_colour_32px_images(name):
    for in_channels, size in ((1, 28), (3, 32)):
        model = build(name, num_classes=7, in_channels=in_channels).eval()
        with torch.no_grad():
            assert model(torch.zeros(1, in_channels, size, size)).shape == (1, 7)


def test_multiply_adds_counted_by_hand():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    assert count_multiply_adds(model, (1, 4, 4)) == 4 * 4 * 2 * 9 + 2 * 3


def test_multiply_adds_grow_fourfold_with_twice_the_image_side():
    model = resnet(8)
    small, large = count_multiply_adds(model, (3, 16, 16)), count_multiply_adds(model, (3, 32, 32))
    fc = 64 * 10
    assert large - fc == 4 * (small - fc)


def test_impossible_architectures_are_refused():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        resnet(9)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        wide_resnet(15, 1)
    with pytest.raises(ValueError, match="positive widths"):
        plain_cnn(((8, 0),))
    with pytest.raises(ValueError, match="resnet8x4"):
        build("resnet7")


def test_plain_cnn_names_its_layers_through_the_whole_network():
    model = plain_cnn(((4, 4), (8,)), in_channels=1)
    names = [name for name, _ in model.named_children()]
    assert names == ["conv1", "relu1", "conv2", "relu2", "pool1", "conv3", "relu3", "pool2", "gap", "embedding", "fc"]
