import math

import pytest
import torch
import torch.nn.functional as F

from kdrepro.losses.response import hinton_loss, kd_loss, soft_targets


def test_soft_targets_match_the_hand_computed_softmax_at_temperature():
    # logits (0, ln 4) at T = 2 -> exp(0), exp(ln 2) = 1, 2 -> (1/3, 2/3)
    q = soft_targets(torch.tensor([[0.0, math.log(4.0)]]), temperature=2.0)
    assert q.tolist()[0] == pytest.approx([1 / 3, 2 / 3])


def test_kd_loss_matches_a_hand_computed_value():
    # teacher (0, ln 3) at T = 1 -> p = (1/4, 3/4); student (0, 0) -> q = (1/2, 1/2)
    # KL(p || q) = 1/4 ln(1/2) + 3/4 ln(3/2)
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    loss = kd_loss(torch.zeros(1, 2), torch.tensor([[0.0, math.log(3.0)]]), temperature=1.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_kd_loss_is_multiplied_by_temperature_squared_and_averaged_over_the_batch():
    # at T = 2 the teacher's logits (0, 2 ln 3) soften to (1/4, 3/4): the same KL as above, times 4
    kl = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    student = torch.zeros(2, 2)
    teacher = torch.tensor([[0.0, 2 * math.log(3.0)], [0.0, 0.0]])  # second row: KL 0
    assert kd_loss(student, teacher, temperature=2.0).item() == pytest.approx(4 * kl / 2, rel=1e-6)


def test_kd_loss_is_zero_when_student_matches_teacher():
    logits = torch.randn(5, 7)
    assert kd_loss(logits, logits.clone(), temperature=4.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_is_invariant_to_adding_a_constant_to_either_logits():
    student, teacher = torch.randn(4, 6), torch.randn(4, 6)
    base = kd_loss(student, teacher, 3.0)
    assert kd_loss(student + 5.0, teacher - 2.0, 3.0).item() == pytest.approx(base.item(), rel=1e-5)


def test_kd_gradient_is_temperature_times_difference_of_soft_targets():
    student, teacher, t = torch.randn(3, 5, requires_grad=True), torch.randn(3, 5), 4.0
    kd_loss(student, teacher, t).backward()
    expected = t * (F.softmax(student.detach() / t, 1) - F.softmax(teacher / t, 1)) / 3
    torch.testing.assert_close(student.grad, expected)


def test_kd_gradient_tends_to_logit_matching_at_high_temperature():
    # Hinton et al. eq. 4: with zero-mean logits and large T, dC/dz_i -> (z_i - v_i) / (N T^2); times T^2
    # that is (z - v) / N, here N = C = 10 classes and a batch of 1.
    g = torch.Generator().manual_seed(0)
    student = torch.randn(1, 10, dtype=torch.float64, generator=g)
    student = (student - student.mean()).requires_grad_()
    teacher = torch.randn(1, 10, dtype=torch.float64, generator=g)
    teacher = teacher - teacher.mean()
    kd_loss(student, teacher, temperature=1e4).backward()
    torch.testing.assert_close(student.grad, (student.detach() - teacher) / 10, rtol=1e-3, atol=1e-8)


def test_kd_gradient_size_does_not_shrink_with_temperature():
    student, teacher = torch.randn(8, 10), torch.randn(8, 10)
    norms = []
    for t in (5.0, 20.0, 80.0):
        s = student.clone().requires_grad_()
        kd_loss(s, teacher, t).backward()
        norms.append(s.grad.norm().item())
    assert max(norms) / min(norms) < 1.5


def test_hinton_loss_weights_hard_and_soft_terms():
    student, teacher, labels = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    hard = F.cross_entropy(student, labels)
    soft = kd_loss(student, teacher, 5.0)
    loss = hinton_loss(student, teacher, labels, temperature=5.0, hard_weight=0.3)
    assert loss.item() == pytest.approx((0.3 * hard + 0.7 * soft).item(), rel=1e-6)
    assert hinton_loss(student, teacher, labels, 5.0, hard_weight=1.0).item() == pytest.approx(hard.item())


@pytest.mark.parametrize("temperature, hard_weight", [(0.0, 0.5), (-1.0, 0.5), (math.inf, 0.5), (2.0, -0.1),
                                                      (2.0, 1.5)])
def test_impossible_hyper_parameters_are_rejected(temperature, hard_weight):
    with pytest.raises(ValueError):
        hinton_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1).long(), temperature, hard_weight)


def test_mismatched_logit_shapes_are_rejected():
    with pytest.raises(ValueError, match="differ in shape"):
        kd_loss(torch.zeros(2, 10), torch.zeros(2, 100), 4.0)


def test_a_tensor_of_several_temperatures_is_refused_by_name():
    with pytest.raises(ValueError, match=r"temperature must be one number, got a tensor of shape \(2,\)"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([2.0, 4.0]))
    assert kd_loss(torch.zeros(2, 3), torch.ones(2, 3), torch.tensor(4.0)) == 0  # one number, as a tensor, is fine
