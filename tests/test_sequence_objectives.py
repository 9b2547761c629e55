"""The sequence objectives' terms against the losses worked out by hand, on models whose outputs are fixed."""

import math

import pytest
import torch
from torch import nn

from kdrepro.data import Batch
from kdrepro.objectives import Context
from kdrepro.objectives.sequence import WordKD
from kdrepro.objectives.task import SequenceNLL
from kdrepro.schemes import Teacher
from kdrepro.seq2seq import PAD

STUDENT = [0.1, 0.6, 0.3]   # p(. | prefix, x) at the one real position, over a vocabulary of three
TEACHER = [0.1, 0.2, 0.7]   # q(. | prefix, x)
# one sentence: its target is word 1 then padding; its source two words then padding
BATCH = Batch(torch.tensor([[4, 5, PAD]]), torch.tensor([[1, PAD, PAD]]), torch.tensor([0]))


class FixedOutputs(nn.Module):
    """A translation model whose next-word distribution is `probabilities` at every position; it remembers the
    shapes it was called with, and its log-probabilities are a parameter, so a gradient can reach them."""

    def __init__(self, probabilities: list[float]):
        super().__init__()
        self.log_probs = nn.Parameter(torch.tensor(probabilities).log())
        self.calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        self.calls.append((tuple(src.shape), tuple(tgt.shape)))
        return self.log_probs.expand(*tgt.shape, -1)


def teacher_context(probabilities: list[float] = TEACHER) -> Context:
    return Context(teacher=Teacher(FixedOutputs(probabilities), BATCH.x))


def test_sequence_nll_is_the_negative_log_probability_of_the_real_target_words():
    student = FixedOutputs(STUDENT)
    terms = SequenceNLL().terms(student, BATCH, Context())
    assert list(terms) == ["nll"] and terms["nll"].item() == pytest.approx(-math.log(0.6), rel=1e-6)


def test_the_objectives_drop_the_columns_that_are_padding_in_every_row():
    student, context = FixedOutputs(STUDENT), teacher_context()
    SequenceNLL().terms(student, BATCH, Context())
    WordKD(hard_weight=0.5).terms(student, BATCH, context)
    assert student.calls == [((1, 2), (1, 1))] * 2
    assert context.teacher.model.calls == [((1, 2), (1, 1))]


def test_word_kd_terms_are_the_weighted_nll_and_kl_to_the_teacher_by_hand():
    terms = WordKD(hard_weight=0.25).terms(FixedOutputs(STUDENT), BATCH, teacher_context())
    kl = 0.1 * math.log(0.1 / 0.1) + 0.2 * math.log(0.2 / 0.6) + 0.7 * math.log(0.7 / 0.3)
    assert list(terms) == ["nll", "word_kd"]
    assert terms["nll"].item() == pytest.approx(0.25 * -math.log(0.6), rel=1e-6)
    assert terms["word_kd"].item() == pytest.approx(0.75 * kl, rel=1e-5)


def test_word_kd_at_a_temperature_compares_softened_distributions_times_t_squared():
    t = 2.0
    soften = [p ** (1 / t) for p in STUDENT], [q ** (1 / t) for q in TEACHER]
    p, q = ([v / sum(values) for v in values] for values in soften)
    kl = sum(qi * math.log(qi / pi) for pi, qi in zip(p, q))
    terms = WordKD(hard_weight=0.0, temperature=t).terms(FixedOutputs(STUDENT), BATCH, teacher_context())
    assert list(terms) == ["word_kd"] and terms["word_kd"].item() == pytest.approx(t * t * kl, rel=1e-5)


def test_word_kd_with_the_whole_weight_on_the_nll_is_the_nll_alone():
    terms = WordKD(hard_weight=1.0).terms(FixedOutputs(STUDENT), BATCH, teacher_context())
    assert list(terms) == ["nll"] and terms["nll"].item() == pytest.approx(-math.log(0.6), rel=1e-6)


def test_word_kd_trains_the_student_and_never_the_teacher():
    student, context = FixedOutputs(STUDENT), teacher_context()
    sum(WordKD(hard_weight=0.5).terms(student, BATCH, context).values()).backward()
    assert student.log_probs.grad.abs().sum() > 0
    assert context.teacher.model.log_probs.grad is None and not context.teacher.model.training


def test_word_kd_needs_a_teacher_and_sound_weights():
    with pytest.raises(ValueError, match="WordKD distils from a teacher, but the run has none"):
        WordKD(hard_weight=0.5).terms(FixedOutputs(STUDENT), BATCH, Context())
    with pytest.raises(ValueError, match="hard_weight must be in"):
        WordKD(hard_weight=1.5)
    with pytest.raises(ValueError, match="temperature must be positive"):
        WordKD(hard_weight=0.5, temperature=0.0)
