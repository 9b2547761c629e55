"""The self scheme: born-again generations, and the CWTM and DKPP ablations of their loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from kdrepro.data import Batch, Split
from kdrepro.losses.response import kd_loss
from kdrepro.models import mlp
from kdrepro.schemes import BornAgain, confidence_weights, generations, permute_dark_knowledge
from kdrepro.train import CrossEntropy, Recipe, fit


def small_net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return mlp((1, 4, 4), (8,), 5)


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
    generator = torch.Generator().manual_seed(0)
    first = permute_dark_knowledge(row.expand(50, 6), generator)
    second = permute_dark_knowledge(row.expand(50, 6), generator)
    assert len({tuple(r.tolist()) for r in first}) > 20
    assert not torch.equal(first, second)


def test_cwtm_weights_are_the_teachers_max_probability_normalised_over_the_batch():
    teacher = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # max probabilities 1/2 and 3/4
    torch.testing.assert_close(confidence_weights(teacher), torch.tensor([0.4, 0.6]))


def test_cwtm_loss_is_the_confidence_weighted_label_cross_entropy():
    teacher = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    student = small_net(0)
    x, y = torch.randn(2, 1, 4, 4), torch.tensor([1, 0])
    loss = BornAgain(teacher, "cwtm").loss(student, Batch(x, y, torch.arange(2)))
    per_sample = F.cross_entropy(student(x), y, reduction="none")
    torch.testing.assert_close(loss, 0.4 * per_sample[0] + 0.6 * per_sample[1])


def test_ban_loss_is_the_kl_to_the_teachers_outputs_at_temperature_one():
    teacher, student = small_net(0), small_net(1)
    x = torch.randn(8, 1, 4, 4)
    batch = Batch(x, torch.randint(0, 5, (8,)), torch.arange(8))
    expected = kd_loss(student(x), teacher.eval()(x).detach(), 1.0)
    torch.testing.assert_close(BornAgain(teacher).loss(student, batch), expected)
    torch.testing.assert_close(BornAgain(teacher(x).detach()).loss(student, batch), expected)  # precomputed logits
    assert BornAgain(student(x).detach()).loss(student, batch).abs() < 1e-6  # zero when it matches its teacher


def test_dkpp_loss_is_the_kl_to_the_permuted_teacher():
    teacher_logits, student = torch.randn(8, 5), small_net(1)
    x = torch.randn(8, 1, 4, 4)
    batch = Batch(x, torch.randint(0, 5, (8,)), torch.arange(8))
    permuted = permute_dark_knowledge(F.softmax(teacher_logits, dim=1), torch.Generator().manual_seed(4))
    expected = F.kl_div(F.log_softmax(student(x), dim=1), permuted, reduction="batchmean")
    torch.testing.assert_close(BornAgain(teacher_logits, "dkpp", seed=4).loss(student, batch), expected)


def test_a_generation_sees_only_its_predecessor():
    split = Split(torch.randn(64, 1, 4, 4), torch.randint(0, 5, (64,)))
    recipe = Recipe(epochs=1, batch_size=16)
    teacher = small_net(0)
    fit(teacher, CrossEntropy(), split, recipe, seed=0, progress_seconds=None)
    calls: dict[int, list[int]] = {}

    def born_again(predecessor, k):
        student = small_net(k)
        seen = calls.setdefault(k, [])
        hooks = [m.register_forward_hook(lambda *_, i=i: seen.append(i)) for i, m in enumerate(chain_so_far)]
        fit(student, BornAgain(predecessor), split, recipe, seed=k, progress_seconds=None)
        for hook in hooks:
            hook.remove()
        chain_so_far.append(student)
        return student

    chain_so_far = [teacher]
    chain = generations(teacher, 3, born_again)
    assert chain == chain_so_far and len(chain) == 4 and chain[0] is teacher
    for k in (1, 2, 3):
        assert set(calls[k]) == {k - 1}, f"generation {k} read generations {sorted(set(calls[k]))}"


def test_born_again_rejects_an_unknown_variant_and_a_bad_weight():
    with pytest.raises(ValueError, match="unknown born-again variant 'dkp'"):
        BornAgain(torch.zeros(4, 5), "dkp")
    with pytest.raises(ValueError, match="hard_weight"):
        BornAgain(torch.zeros(4, 5), hard_weight=1.5)
