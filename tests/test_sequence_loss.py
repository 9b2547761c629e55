"""Word-level KD and the sequence NLL: hand-computed values, padding masked, Hinton KD at every position."""

import math

import pytest
import torch

from kdrepro.losses.response import kd_loss
from kdrepro.losses.sequence import generalized_jsd_loss, sequence_nll, word_kd_loss
from kdrepro.seq2seq import EOS, PAD


def test_nll_of_uniform_predictions_is_log_vocabulary_whatever_the_padding_holds():
    logits = torch.zeros(2, 3, 4)
    logits[1, 2] = torch.tensor([50.0, -50.0, 3.0, 7.0])  # a padded position: must not count
    targets = torch.tensor([[1, 2, 3], [3, 1, PAD]])
    assert sequence_nll(logits, targets).item() == pytest.approx(math.log(4))


def test_nll_is_averaged_over_real_tokens_not_sentences():
    logits = torch.log(torch.tensor([[[0.1, 0.5, 0.4], [0.1, 0.5, 0.4]], [[0.1, 0.5, 0.4], [0.1, 0.5, 0.4]]]))
    targets = torch.tensor([[1, 2], [1, PAD]])
    expected = -(2 * math.log(0.5) + math.log(0.4)) / 3
    assert sequence_nll(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_word_kd_by_hand_on_one_real_token():
    student = torch.log(torch.tensor([[[0.1, 0.6, 0.3], [0.3, 0.3, 0.4]]]))
    teacher = torch.log(torch.tensor([[[0.1, 0.2, 0.7], [0.9, 0.05, 0.05]]]))
    targets = torch.tensor([[1, PAD]])
    kl = 0.2 * math.log(0.2 / 0.6) + 0.7 * math.log(0.7 / 0.3) + 0.1 * math.log(0.1 / 0.1)
    assert word_kd_loss(student, teacher, targets).item() == pytest.approx(kl, rel=1e-5)


def test_word_kd_is_hinton_kd_over_the_real_tokens():
    torch.manual_seed(0)
    student, teacher = torch.randn(3, 5, 11), torch.randn(3, 5, 11)
    targets = torch.randint(1, 11, (3, 5))
    targets[0, 3:] = PAD
    targets[2, 1:] = PAD
    real = targets != PAD
    expected = kd_loss(student[real], teacher[real], temperature=2.0)
    assert word_kd_loss(student, teacher, targets, temperature=2.0).item() == pytest.approx(expected.item())


def test_padding_positions_get_no_gradient():
    student = torch.randn(2, 4, 6, requires_grad=True)
    teacher = torch.randn(2, 4, 6)
    targets = torch.tensor([[1, 2, PAD, PAD], [3, 4, 5, PAD]])
    (sequence_nll(student, targets) + word_kd_loss(student, teacher, targets)).backward()
    assert student.grad[targets == PAD].abs().sum() == 0
    assert student.grad[targets != PAD].abs().sum() > 0


def test_a_student_that_matches_the_teacher_pays_no_word_kd():
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[1, 2, 3], [4, PAD, PAD]])
    assert word_kd_loss(logits, logits, targets, temperature=3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_shapes_that_do_not_line_up_are_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        word_kd_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), torch.ones(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="batch, length, vocabulary"):
        sequence_nll(torch.zeros(2, 3), torch.ones(2, dtype=torch.long))


# --- the generalised JSD of GKD (Agarwal et al. 2024) and its ends ------------------------------------------------

def two_positions(first: list[float], second: list[float]) -> torch.Tensor:
    """Log-probabilities of one sentence with two positions: (1, 2, vocabulary)."""
    return torch.log(torch.tensor([[first, second]]))


def test_generalized_jsd_at_one_half_by_hand():
    student, teacher = two_positions([0.2, 0.8], [0.5, 0.5]), two_positions([0.6, 0.4], [0.5, 0.5])
    targets = torch.tensor([[1, PAD]])   # one real token; the second position must not count
    m = [0.5 * 0.6 + 0.5 * 0.2, 0.5 * 0.4 + 0.5 * 0.8]   # (0.4, 0.6)
    kl_teacher = 0.6 * math.log(0.6 / m[0]) + 0.4 * math.log(0.4 / m[1])
    kl_student = 0.2 * math.log(0.2 / m[0]) + 0.8 * math.log(0.8 / m[1])
    expected = 0.5 * kl_teacher + 0.5 * kl_student
    assert generalized_jsd_loss(student, teacher, targets, beta=0.5).item() == pytest.approx(expected, rel=1e-5)


def test_generalized_jsd_weights_the_mixture_and_the_two_kls_by_beta():
    student, teacher = two_positions([0.2, 0.8], [0.5, 0.5]), two_positions([0.6, 0.4], [0.5, 0.5])
    beta, targets = 0.25, torch.tensor([[1, PAD]])
    m = [beta * 0.6 + (1 - beta) * 0.2, beta * 0.4 + (1 - beta) * 0.8]   # (0.3, 0.7)
    expected = beta * (0.6 * math.log(0.6 / m[0]) + 0.4 * math.log(0.4 / m[1])) + \
        (1 - beta) * (0.2 * math.log(0.2 / m[0]) + 0.8 * math.log(0.8 / m[1]))
    assert generalized_jsd_loss(student, teacher, targets, beta=beta).item() == pytest.approx(expected, rel=1e-5)


def test_beta_zero_is_the_forward_kl_of_word_kd_and_beta_one_the_reverse_kl():
    torch.manual_seed(1)
    student, teacher = torch.randn(3, 5, 7), torch.randn(3, 5, 7)
    targets = torch.randint(4, 7, (3, 5))
    targets[0, 2:] = PAD
    targets[1, 4] = EOS
    forward = word_kd_loss(student, teacher, targets)      # KL(teacher || student)
    reverse = word_kd_loss(teacher, student, targets)      # the same function, roles swapped: KL(student || teacher)
    assert generalized_jsd_loss(student, teacher, targets, beta=0.0).item() == pytest.approx(forward.item(), rel=1e-5)
    assert generalized_jsd_loss(student, teacher, targets, beta=1.0).item() == pytest.approx(reverse.item(), rel=1e-5)


def test_the_ends_are_the_limits_of_the_scaled_divergence():
    torch.manual_seed(2)
    student, teacher = torch.randn(2, 4, 6, dtype=torch.float64), torch.randn(2, 4, 6, dtype=torch.float64)
    targets = torch.randint(4, 6, (2, 4))
    forward = generalized_jsd_loss(student, teacher, targets, beta=0.0).item()
    reverse = generalized_jsd_loss(student, teacher, targets, beta=1.0).item()
    small = 1e-5
    assert generalized_jsd_loss(student, teacher, targets, beta=small).item() / small == pytest.approx(forward, rel=1e-3)
    assert generalized_jsd_loss(student, teacher, targets, beta=1 - small).item() / small == \
        pytest.approx(reverse, rel=1e-3)


def test_tokens_after_the_first_eos_and_padding_are_not_counted_and_get_no_gradient():
    torch.manual_seed(3)
    student = torch.randn(2, 5, 6, requires_grad=True)
    teacher = torch.randn(2, 5, 6)
    targets = torch.tensor([[4, EOS, 5, 4, PAD], [5, 4, 4, EOS, PAD]])   # row 0 holds words after its EOS
    counted = torch.tensor([[True, True, False, False, False], [True, True, True, True, False]])
    loss = generalized_jsd_loss(student, teacher, targets, beta=0.5)
    loss.backward()
    assert student.grad[~counted].abs().sum() == 0 and (student.grad[counted].abs().sum(dim=-1) > 0).all()
    per_token = [generalized_jsd_loss(student[i:i + 1, t:t + 1], teacher[i:i + 1, t:t + 1],
                                      torch.tensor([[4]]), beta=0.5).item() for i, t in counted.nonzero().tolist()]
    assert loss.item() == pytest.approx(sum(per_token) / len(per_token), rel=1e-5)   # the mean over real tokens


def test_the_divergence_is_zero_when_the_student_matches_the_teacher():
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[4, EOS, PAD], [4, 4, EOS]])
    for beta in (0.0, 0.3, 1.0):
        assert generalized_jsd_loss(logits, logits, targets, beta=beta).item() == pytest.approx(0.0, abs=1e-6)


def test_a_beta_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match=r"beta=1.5 must be in \[0, 1\]"):
        generalized_jsd_loss(torch.zeros(1, 1, 3), torch.zeros(1, 1, 3), torch.ones(1, 1, dtype=torch.long), 1.5)
