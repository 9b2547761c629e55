import math

import pytest
import torch

from kdrepro.losses.relation import (
    check_fsp_weights,
    fsp_loss,
    fsp_matrix,
    rkd_angle_loss,
    rkd_angles,
    rkd_distance_loss,
    rkd_distances,
    rkd_loss,
)


def test_fsp_matrix_is_the_spatial_mean_of_channel_products():
    first = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])      # (1, 2 channels, 1, 2)
    second = torch.tensor([[[[5.0, 6.0]]]])                    # (1, 1 channel, 1, 2)
    expected = torch.tensor([[[(1 * 5 + 2 * 6) / 2], [(3 * 5 + 4 * 6) / 2]]])
    torch.testing.assert_close(fsp_matrix(first, second), expected)


def test_fsp_matrix_max_pools_the_larger_map_to_the_smaller():
    first = torch.tensor([[[[1.0, -2.0], [0.5, 3.0]]]])        # 2x2 map, max 3
    second = torch.tensor([[[[2.0]]]])                         # 1x1 map
    torch.testing.assert_close(fsp_matrix(first, second), torch.tensor([[[6.0]]]))
    torch.testing.assert_close(fsp_matrix(second, first), torch.tensor([[[6.0]]]))


def test_fsp_loss_is_the_squared_frobenius_norm_averaged_over_the_batch():
    teacher = torch.zeros(2, 1, 2)
    student = torch.tensor([[[1.0, 2.0]], [[0.0, 3.0]]])       # squared norms 5 and 9
    assert fsp_loss(student, teacher).item() == pytest.approx(7.0)


def test_fsp_loss_is_invariant_to_permuting_the_batch():
    g = torch.Generator().manual_seed(0)
    s1, s2, t1, t2 = (torch.randn(6, c, 4, 4, generator=g) for c in (3, 5, 3, 5))
    permutation = torch.randperm(6, generator=g)
    loss = fsp_loss(fsp_matrix(s1, s2), fsp_matrix(t1, t2))
    permuted = fsp_loss(fsp_matrix(s1[permutation], s2[permutation]), fsp_matrix(t1[permutation], t2[permutation]))
    torch.testing.assert_close(permuted, loss)


def test_fsp_matrices_of_different_channel_counts_are_refused():
    with pytest.raises(ValueError, match="channel counts must match"):
        fsp_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))


def right_triangle() -> torch.Tensor:
    return torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])   # sides 3, 4, 5


def test_distances_are_normalised_by_their_mean_nonzero_value():
    expected = torch.tensor([[0.0, 3, 4], [3, 0, 5], [4, 5, 0]]) / 4.0
    torch.testing.assert_close(rkd_distances(right_triangle()), expected)


def test_angles_are_the_cosines_at_each_vertex():
    angles = rkd_angles(right_triangle())                      # [j, i, k]: the angle at point j
    assert angles[0, 1, 2].item() == pytest.approx(0.0, abs=1e-6)           # the right angle
    assert angles[1, 0, 2].item() == pytest.approx(3 / 5)                     # cos at (3, 0)
    assert angles[2, 0, 1].item() == pytest.approx(4 / 5)                     # cos at (0, 4)
    assert angles[1, 2, 2].item() == pytest.approx(1.0)


def test_distance_loss_is_the_mean_huber_loss_over_all_pairs():
    teacher = right_triangle()
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])  # distances 1, 2, 1: mean 4/3
    # normalised student: 0.75, 1.5, 0.75 against the teacher's 0.75, 1.0, 1.25; two differences of 0.5 per
    # direction, Huber(0.5) = 0.5 * 0.5^2, averaged over the 9 ordered pairs
    assert rkd_distance_loss(student, teacher).item() == pytest.approx(4 * 0.125 / 9)


def test_a_student_with_the_teachers_relations_pays_nothing():
    teacher = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    assert rkd_loss(teacher.clone(), teacher, 1.0, 2.0).item() == pytest.approx(0.0, abs=1e-6)


def test_rkd_is_invariant_to_rotation_translation_and_uniform_scaling():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    moved = 3.7 * teacher @ rotation + torch.randn(6, generator=g)
    for loss in (rkd_distance_loss, rkd_angle_loss):
        torch.testing.assert_close(loss(student, moved), loss(student, teacher))
        torch.testing.assert_close(loss(0.2 * student @ rotation.T - 1.0, teacher), loss(student, teacher))
    assert rkd_distance_loss(student, teacher) > 0.01 and rkd_angle_loss(student, teacher) > 0.01


def test_the_weights_combine_the_two_terms():
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(7, 4, generator=g), torch.randn(7, 3, generator=g)  # sizes may differ
    expected = 25 * rkd_distance_loss(student, teacher) + 50 * rkd_angle_loss(student, teacher)
    torch.testing.assert_close(rkd_loss(student, teacher, 25.0, 50.0), expected)
    torch.testing.assert_close(rkd_loss(student, teacher, 0.0, 2.0), 2 * rkd_angle_loss(student, teacher))
    with pytest.raises(ValueError, match="non-negative, finite and not both zero"):
        rkd_loss(student, teacher, 0.0, 0.0)


def test_gradients_stay_finite_when_two_embeddings_coincide():
    student = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0], [3.0, -1.0]], requires_grad=True)
    teacher = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    rkd_loss(student, teacher, 1.0, 2.0).backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_the_distance_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(3)
    student = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(5, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: rkd_loss(s, teacher, 1.0, 2.0), (student,))


def test_batches_of_different_sizes_are_refused():
    with pytest.raises(ValueError, match="different batches"):
        rkd_distance_loss(torch.randn(4, 2), torch.randn(5, 2))


@pytest.mark.parametrize("distance_weight, angle_weight", [(math.nan, 2.0), (1.0, math.inf), (-1.0, 2.0), (0.0, 0.0)])
def test_rkd_weights_that_are_negative_not_finite_or_both_zero_are_refused(distance_weight, angle_weight):
    with pytest.raises(ValueError, match="RKD weights must be non-negative, finite and not both zero"):
        rkd_loss(torch.randn(4, 3), torch.randn(4, 3), distance_weight, angle_weight)


@pytest.mark.parametrize("weights", [[1.0, math.nan], [math.inf, 1.0], [-1.0, 1.0], [1.0]])
def test_fsp_weights_must_be_one_non_negative_finite_number_per_pair(weights):
    with pytest.raises(ValueError, match=r"one non-negative weight per layer pair, each finite: 2 pairs"):
        check_fsp_weights(weights, 2)
    check_fsp_weights([0.0, 2.5], 2)
