import math

import pytest
import torch

from kdrepro.losses.feature import HintRegressor, attention_map, attention_transfer_loss, hint_loss


def test_hint_loss_by_hand():
    hint = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 2.0]]).view(2, 3, 1, 1)
    regressed = torch.zeros_like(hint)
    assert hint_loss(regressed, hint).item() == pytest.approx(0.5 * (5 + 4) / 2)     # paper: half squared norm
    assert hint_loss(regressed, hint, "mean").item() == pytest.approx(9 / 6)        # code: mean squared error


def test_hint_loss_rejects_shapes_that_differ():
    with pytest.raises(ValueError, match="differ in shape"):
        hint_loss(torch.zeros(2, 4, 7, 7), torch.zeros(2, 4, 8, 8))


def test_the_paper_regressor_kernel_satisfies_n_g_minus_k_plus_1_equals_n_h():
    regressor = HintRegressor((8, 10, 10), (4, 7, 7))
    assert regressor.conv.kernel_size == (4, 4)                     # 10 - 4 + 1 = 7
    out = regressor(torch.randn(3, 8, 10, 10))
    assert out.shape == (3, 4, 7, 7) and (out >= 0).all()          # ReLU, like the hint layer
    linear = HintRegressor((8, 7, 7), (4, 7, 7), activation=None)
    assert linear.conv.kernel_size == (1, 1) and (linear(torch.randn(3, 8, 7, 7)) < 0).any()


def test_regressors_that_cannot_match_the_hint_are_refused():
    with pytest.raises(ValueError, match="smaller than the hint"):
        HintRegressor((8, 7, 7), (4, 14, 14))
    with pytest.raises(ValueError, match="1x1 regressor keeps"):
        HintRegressor((8, 14, 14), (4, 7, 7), kind="1x1")
    assert HintRegressor((8, 7, 7), (4, 7, 7), kind="1x1")(torch.randn(2, 8, 7, 7)).shape == (2, 4, 7, 7)


def test_attention_map_by_hand():
    features = torch.tensor([[[[1.0, 2.0]], [[2.0, 0.0]]]])       # 1 example, 2 channels, 1x2 map
    expected = torch.tensor([[5.0, 4.0]]) / math.sqrt(41)          # sum_c A^2 = (1 + 4, 4 + 0), then L2-normalised
    torch.testing.assert_close(attention_map(features), expected)


def test_attention_is_invariant_to_the_scale_of_the_activations_and_their_sign():
    features = torch.randn(4, 6, 5, 5)
    torch.testing.assert_close(attention_map(features), attention_map(-3.7 * features))
    assert attention_transfer_loss(features, 10 * features).item() == pytest.approx(0.0, abs=1e-7)
    # the authors' mean over channels gives the same map once normalised
    mean_map = torch.nn.functional.normalize(features.pow(2).mean(1).flatten(1), dim=1)
    torch.testing.assert_close(attention_map(features), mean_map)


def test_the_two_forms_of_the_attention_loss_by_hand():
    student = torch.tensor([[[[1.0, 0.0]]]])                       # map (1, 0)
    teacher = torch.tensor([[[[0.0, 1.0]]]])                       # map (0, 1)
    assert attention_transfer_loss(student, teacher, form="paper").item() == pytest.approx(math.sqrt(2))
    assert attention_transfer_loss(student, teacher, form="code").item() == pytest.approx(1.0)


def test_attention_maps_of_different_sizes_are_rejected_not_pooled():
    with pytest.raises(ValueError, match="same spatial resolution"):
        attention_transfer_loss(torch.randn(2, 4, 14, 14), torch.randn(2, 8, 7, 7))


def test_attention_loss_gradient_matches_finite_differences():
    student = torch.randn(2, 3, 4, 4, dtype=torch.double, requires_grad=True)
    teacher = torch.randn(2, 5, 4, 4, dtype=torch.double)
    for form in ("paper", "code"):
        assert torch.autograd.gradcheck(lambda s: attention_transfer_loss(s, teacher, form=form), (student,))


@pytest.mark.parametrize("p", [0, -2, math.nan, math.inf])
def test_an_attention_exponent_that_is_not_positive_and_finite_is_refused(p):
    student, teacher = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=f"the attention exponent p must be positive and finite, got {p}"):
        attention_transfer_loss(student, teacher, p=p)
