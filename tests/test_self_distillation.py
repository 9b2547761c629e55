"""The self scheme: born-again generations as a chain of arms, and the objectives of BAN and its CWTM and DKPP
ablations."""

import math

import pytest
import torch
import torch.nn.functional as F

from kdrepro import experiment
from kdrepro.arms import Arm, Net, Rows, train_arm
from kdrepro.data import Batch, Data, Split
from kdrepro.experiment import Experiment
from kdrepro.experiments import born_again
from kdrepro.losses.response import confidence_weighted_loss, confidence_weights, kd_loss, permute_dark_knowledge
from kdrepro.objectives import Context
from kdrepro.objectives.response import BornAgain, ConfidenceWeighted, DarkKnowledgePermuted
from kdrepro.objectives.task import CrossEntropy
from kdrepro.schemes import Teacher, generations
from kdrepro.seeds import generator
from kdrepro.train import Recipe

MLP = {"family": "mlp", "hidden": [8]}
RECIPE = Recipe(epochs=1, batch_size=16)
TEACHER = Arm("teacher", Net(MLP, "teacher"), CrossEntropy(), RECIPE, rows=Rows(fraction=0.5), seed=4)


def small_net(seed: int) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5))


def toy_data(n: int = 64) -> Data:
    split = Split(torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(0)), torch.arange(n) % 5)
    return Data("toy", split, split, split, tuple("abcde"))


def batch_of(x: torch.Tensor) -> Batch:
    return Batch(x, torch.arange(len(x)) % 5, torch.arange(len(x)))


def context_with(teacher_logits: torch.Tensor, seed: int = 0) -> Context:
    """A context whose teacher outputs `teacher_logits` (an identity network over fixed inputs)."""
    return Context(teacher=Teacher(torch.nn.Identity(), teacher_logits), generator=generator(seed, "objective"))


# --- the loss terms -------------------------------------------------------------------------------------------------

def test_dkpp_keeps_the_argmax_and_the_multiset_of_probabilities():
    probabilities = F.softmax(3 * torch.randn(200, 10, generator=torch.Generator().manual_seed(0)), dim=1)
    permuted = permute_dark_knowledge(probabilities, torch.Generator().manual_seed(1))
    top = probabilities.argmax(dim=1)
    assert torch.equal(permuted.argmax(dim=1), top)
    assert torch.equal(permuted.gather(1, top[:, None]), probabilities.gather(1, top[:, None]))
    assert torch.equal(permuted.sort(dim=1).values, probabilities.sort(dim=1).values)
    moved = (permuted != probabilities).any(dim=1)
    assert moved.float().mean() > 0.95  # a row stays put only by the 1-in-9! chance of the identity


def test_dkpp_permutations_differ_between_rows_and_draws():
    row = F.softmax(torch.arange(6.0), dim=0)
    draws = torch.Generator().manual_seed(0)
    first = permute_dark_knowledge(row.expand(50, 6), draws)
    second = permute_dark_knowledge(row.expand(50, 6), draws)
    assert len({tuple(r.tolist()) for r in first}) > 20
    assert not torch.equal(first, second)


def test_cwtm_weights_are_the_teachers_max_probability_normalised_over_the_batch():
    teacher = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # max probabilities 1/2 and 3/4
    torch.testing.assert_close(confidence_weights(teacher), torch.tensor([0.4, 0.6]))


def test_cwtm_loss_is_the_confidence_weighted_label_cross_entropy():
    teacher = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    student, labels = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([1, 0])
    per_sample = [math.log(1 + math.e), math.log(1 + math.exp(2))]  # -log softmax at the label, by hand
    torch.testing.assert_close(confidence_weighted_loss(student, teacher, labels),
                               torch.tensor(0.4 * per_sample[0] + 0.6 * per_sample[1]))


# --- the objectives -------------------------------------------------------------------------------------------------

def test_ban_is_the_kl_to_the_teachers_outputs_at_temperature_one():
    student, x = small_net(1), torch.randn(8, 1, 4, 4)
    teacher_logits = torch.randn(8, 5)
    terms = BornAgain().terms(student, batch_of(x), context_with(teacher_logits))
    assert list(terms) == ["kd"]
    q_t, q_s = F.softmax(teacher_logits, dim=1), F.softmax(student(x), dim=1)
    torch.testing.assert_close(terms["kd"], (q_t * (q_t.log() - q_s.log())).sum(dim=1).mean())
    matched = BornAgain().terms(student, batch_of(x), context_with(student(x).detach()))
    assert matched["kd"].abs() < 1e-6  # zero when it matches its teacher


def test_ban_with_labels_weighs_both_terms():
    student, x = small_net(1), torch.randn(8, 1, 4, 4)
    teacher_logits = torch.randn(8, 5)
    terms = BornAgain(hard_weight=0.25).terms(student, batch_of(x), context_with(teacher_logits))
    torch.testing.assert_close(terms["ce"], 0.25 * F.cross_entropy(student(x), batch_of(x).y))
    torch.testing.assert_close(terms["kd"], 0.75 * kd_loss(student(x), teacher_logits, 1.0))


def test_cwtm_objective_is_the_confidence_weighted_loss():
    student, x = small_net(1), torch.randn(8, 1, 4, 4)
    teacher_logits = torch.randn(8, 5)
    terms = ConfidenceWeighted().terms(student, batch_of(x), context_with(teacher_logits))
    weights = F.softmax(teacher_logits, dim=1).amax(dim=1)
    per_sample = F.cross_entropy(student(x), batch_of(x).y, reduction="none")
    torch.testing.assert_close(terms, {"cwtm": (weights * per_sample).sum() / weights.sum()})


def test_dkpp_objective_is_the_kl_to_the_permuted_teacher_drawn_from_the_runs_generator():
    student, x = small_net(1), torch.randn(8, 1, 4, 4)
    teacher_logits = torch.randn(8, 5)
    terms = DarkKnowledgePermuted().terms(student, batch_of(x), context_with(teacher_logits, seed=4))
    permuted = permute_dark_knowledge(F.softmax(teacher_logits, dim=1), generator(4, "objective"))
    expected = F.kl_div(F.log_softmax(student(x), dim=1), permuted, reduction="batchmean")
    torch.testing.assert_close(terms, {"kd": expected})


def test_the_objectives_need_a_teacher_and_a_weight_in_range():
    with pytest.raises(ValueError, match="give the arm a teacher"):
        BornAgain().terms(small_net(0), batch_of(torch.randn(2, 1, 4, 4)), Context())
    with pytest.raises(ValueError, match="hard_weight"):
        BornAgain(hard_weight=1.5)
    with pytest.raises(ValueError, match="hard_weight"):
        DarkKnowledgePermuted(hard_weight=-0.1)


# --- generations as arms --------------------------------------------------------------------------------------------

def test_each_generation_is_taught_by_the_one_before_from_weights_of_its_own():
    chain = generations(TEACHER, BornAgain(), 3, "ban")
    assert [arm.name for arm in chain] == ["teacher", "ban_1", "ban_2", "ban_3"] and chain[0] is TEACHER
    for k in (1, 2, 3):
        assert chain[k].teacher is chain[k - 1]
        assert chain[k].net == Net(MLP, f"ban {k}") and chain[k].objective == BornAgain()
        assert (chain[k].recipe, chain[k].rows, chain[k].seed) == (RECIPE, Rows(fraction=0.5), 4)


def test_a_generation_is_trained_from_its_predecessors_model_alone(monkeypatch, isolated):
    taught: list[tuple[str, torch.nn.Module | None]] = []

    def spy(arm, model, data, teacher, *args, **kwargs):
        taught.append((arm.name, teacher))
        return train_arm(arm, model, data, teacher, *args, **kwargs)

    monkeypatch.setattr(experiment, "train_arm", spy)
    monkeypatch.setenv("KDREPRO_PROFILE", "smoke")
    exp = Experiment(born_again, "smoke")
    chain, data = generations(TEACHER.at(0), BornAgain(), 3, "ban"), toy_data()
    last = exp.train(chain[3], data)
    assert [name for name, _ in taught] == ["teacher", "ban_1", "ban_2", "ban_3"]
    assert taught[0][1] is None
    for k in (1, 2, 3):
        assert taught[k][1] is exp.train(chain[k - 1], data)  # the model trained for the arm before
    assert last is exp.train(chain[3], data) and len(taught) == 4  # each trained once
