import math

import pytest
import torch
from torch import nn

from kdrepro.data import Batch
from kdrepro.losses.task import label_smoothing_loss
from kdrepro.objectives import Context
from kdrepro.objectives.task import LabelSmoothing


def test_label_smoothing_loss_matches_a_hand_computed_value():
    # softmax([ln 2, 0, 0]) = [1/2, 1/4, 1/4]; eps = 0.3 over 3 classes: q = [0.8, 0.1, 0.1]
    # H = -(0.8 ln 1/2 + 0.1 ln 1/4 + 0.1 ln 1/4) = 0.8 ln 2 + 0.4 ln 2 = 1.2 ln 2
    logits = torch.tensor([[math.log(2.0), 0.0, 0.0]])
    assert label_smoothing_loss(logits, torch.tensor([0]), 0.3).item() == pytest.approx(1.2 * math.log(2))


def test_label_smoothing_loss_averages_over_the_batch_and_is_the_cross_entropy_without_smoothing():
    # second row, label 1: q = [0.1, 0.8, 0.1], H = 0.1 ln 2 + 0.8 ln 4 + 0.1 ln 4 = 1.9 ln 2
    logits = torch.tensor([[math.log(2.0), 0.0, 0.0], [math.log(2.0), 0.0, 0.0]])
    labels = torch.tensor([0, 1])
    assert label_smoothing_loss(logits, labels, 0.3).item() == pytest.approx((1.2 + 1.9) / 2 * math.log(2))
    assert label_smoothing_loss(logits, labels, 0.0).item() == pytest.approx((1 + 2) / 2 * math.log(2))


@pytest.mark.parametrize("smoothing", [-0.1, 1.0])
def test_label_smoothing_refuses_a_share_outside_zero_to_one(smoothing):
    with pytest.raises(ValueError, match="smoothing must be in"):
        label_smoothing_loss(torch.zeros(1, 3), torch.tensor([0]), smoothing)


def test_label_smoothing_objective_returns_the_smoothed_cross_entropy_as_its_term():
    x, y = torch.tensor([[math.log(2.0), 0.0, 0.0]]), torch.tensor([0])
    terms = LabelSmoothing(0.3).terms(nn.Identity(), Batch(x, y, torch.arange(1)), Context())
    assert list(terms) == ["smoothed_ce"]
    assert terms["smoothed_ce"].item() == pytest.approx(1.2 * math.log(2))
