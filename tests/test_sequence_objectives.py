"""The sequence objectives' terms against the losses worked out by hand, on models whose outputs are fixed."""

import math

import pytest
import torch
from torch import nn

from kdrepro import schemes
from kdrepro.data import Batch, Split
from kdrepro.losses.sequence import generalized_jsd_loss
from kdrepro.objectives import Context
from kdrepro.objectives.sequence import OnPolicyKD, WordKD
from kdrepro.objectives.task import SequenceNLL
from kdrepro.schemes import Teacher
from kdrepro.seeds import generator
from kdrepro.seq2seq import EOS, PAD, Seq2Seq, sample, trim

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


# --- on-policy distillation (GKD, Agarwal et al. 2024) --------------------------------------------------------------

def tiny_translator(seed: int, hidden: int = 8) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(src_vocab=7, tgt_vocab=6, layers=1, hidden=hidden, embedding=6)


SOURCES = Batch(torch.tensor([[4, 5, 6], [6, 4, PAD]]), torch.tensor([[4, EOS, PAD], [5, 4, EOS]]), torch.tensor([0, 1]))


def test_on_fixed_targets_beta_zero_is_the_forward_kl_and_beta_one_the_reverse_kl_by_hand():
    forward = 0.1 * math.log(0.1 / 0.1) + 0.2 * math.log(0.2 / 0.6) + 0.7 * math.log(0.7 / 0.3)
    reverse = 0.1 * math.log(0.1 / 0.1) + 0.6 * math.log(0.6 / 0.2) + 0.3 * math.log(0.3 / 0.7)
    for beta, expected in ((0.0, forward), (1.0, reverse)):
        terms = OnPolicyKD(beta, on_policy=0.0).terms(FixedOutputs(STUDENT), BATCH, teacher_context())
        assert list(terms) == ["gkd"] and terms["gkd"].item() == pytest.approx(expected, rel=1e-5)


def test_on_policy_grades_the_students_own_samples_in_one_teacher_forced_pass():
    student, teacher = tiny_translator(0), tiny_translator(1, hidden=12)
    objective = OnPolicyKD(beta=0.5, temperature=1.5, max_len=4)
    terms = objective.terms(student, SOURCES, Context(teacher=Teacher(teacher, SOURCES.x), generator=generator(7, "o")))
    drawn = sample(student, SOURCES.x, 4, 1.5, generator(7, "o"))   # the same stream: the same samples
    expected = generalized_jsd_loss(student(SOURCES.x, drawn), teacher(SOURCES.x, drawn), drawn, beta=0.5)
    assert terms["gkd"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_on_policy_trains_the_student_and_never_the_teacher():
    student, teacher = tiny_translator(0), tiny_translator(1)
    context = Context(teacher=Teacher(teacher, SOURCES.x), generator=generator(0, "o"))
    OnPolicyKD(beta=1.0, max_len=4).terms(student, SOURCES, context)["gkd"].backward()
    assert all(p.grad is not None for p in student.out.parameters()) and student.training
    assert all(p.grad is None for p in teacher.parameters()) and not teacher.training


def test_the_teachers_outputs_on_the_fixed_targets_are_computed_once_and_read_at_the_batchs_rows(monkeypatch):
    teacher = tiny_translator(1, hidden=12)
    # the student's split: four sentences padded to the widest; the batch holds its rows 3 and 1
    split = Split(torch.tensor([[4, 5, 6], [6, 4, PAD], [5, PAD, PAD], [4, 4, PAD]]),
                  torch.tensor([[4, EOS, PAD, PAD], [5, 4, 3, EOS], [EOS, PAD, PAD, PAD], [3, EOS, PAD, PAD]]))
    batch = trim(Batch(split.x[[3, 1]], split.y[[3, 1]], torch.tensor([3, 1])))   # trimmed to 3 target columns
    expected = teacher.eval()(batch.x, batch.y)
    passes, forced_logits = [], schemes.forced_logits
    monkeypatch.setattr(schemes, "forced_logits", lambda *args: passes.append(args) or forced_logits(*args))
    kept = Teacher(teacher, split.x, train=split)
    for _ in range(2):
        torch.testing.assert_close(kept.forced_outputs(batch), expected)
    assert len(passes) == 1 and len(passes[0][1]) == 4                # one pass, over the whole split
    monkeypatch.setattr(schemes, "FEATURES_KEPT_BYTES", 4 * 4 * 6 * 4 - 1)   # 4 rows x 4 columns x 6 words, float32
    for too_large_or_no_split in (Teacher(teacher, split.x, train=split), Teacher(teacher, split.x)):
        torch.testing.assert_close(too_large_or_no_split.forced_outputs(batch), expected)
    assert len(passes) == 1                                              # both computed for the batch alone


def test_word_kd_reads_the_kept_outputs_as_it_would_compute_them():
    student, teacher = tiny_translator(0), tiny_translator(1, hidden=12)
    split = Split(SOURCES.x, SOURCES.y)
    kept = WordKD(0.5).terms(student, SOURCES, Context(teacher=Teacher(teacher, split.x, train=split)))
    per_batch = WordKD(0.5).terms(student, SOURCES, Context(teacher=Teacher(teacher, split.x)))
    assert kept.keys() == per_batch.keys() == {"nll", "word_kd"}
    for term in kept:
        assert kept[term].item() == pytest.approx(per_batch[term].item(), rel=1e-6)


def test_the_mixed_objective_samples_about_lambda_of_the_batches():
    objective, stream = OnPolicyKD(beta=0.5, on_policy=0.3), generator(0, "objective")
    share = sum(objective.samples(stream) for _ in range(4000)) / 4000
    assert share == pytest.approx(0.3, abs=0.03)   # four standard errors of a share of 0.3 over 4,000 draws
    assert OnPolicyKD(beta=0.5, on_policy=1.0).samples(stream) and not OnPolicyKD(beta=0.5, on_policy=0.0).samples(stream)


def test_on_policy_settings_out_of_range_are_refused():
    with pytest.raises(ValueError, match="beta=-0.1 must be in"):
        OnPolicyKD(beta=-0.1)
    with pytest.raises(ValueError, match="on_policy=1.2 is the share of batches"):
        OnPolicyKD(beta=0.5, on_policy=1.2)
    with pytest.raises(ValueError, match="temperature=0 must be positive"):
        OnPolicyKD(beta=0.5, temperature=0)
    with pytest.raises(ValueError, match="OnPolicyKD distils from a teacher"):
        OnPolicyKD(beta=0.5).terms(tiny_translator(0), SOURCES, Context())
