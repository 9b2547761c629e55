"""Word-level KD and the sequence NLL: hand-computed values, padding masked, Hinton KD at every position."""

import math

import pytest
import torch

from kdrepro.losses.response import kd_loss
from kdrepro.losses.sequence import sequence_nll, word_kd_loss

PAD = 0


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
