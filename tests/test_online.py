"""The online scheme: a cohort of peers trained together by `fit` on Deep Mutual Learning's objective."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from kdrepro.data import Split
from kdrepro.models import mlp
from kdrepro.schemes import Cohort, MutualLearning, ensemble_logits, mutual_learning_losses
from kdrepro.train import CrossEntropy, Recipe, fit


def toy_split(n: int = 96) -> Split:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 4, 4, generator=generator)
    return Split(x, (x.flatten(1).sum(dim=1) > 0).long() + 2 * (x[:, 0, 0, 0] > 0).long())


def small_net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return mlp((1, 4, 4), (16,), 4)


RECIPE = Recipe(epochs=3, batch_size=32, lr=0.1)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_a_cohort_of_one_peer_is_plain_training():
    alone, peer = small_net(0), small_net(0)
    fit(alone, CrossEntropy(), toy_split(), RECIPE, seed=3, progress_seconds=None)
    fit(Cohort([peer]), MutualLearning(), toy_split(), RECIPE, seed=3, progress_seconds=None)
    assert_same_weights(alone, peer)
    assert not torch.equal(next(small_net(0).parameters()), next(alone.parameters()))  # it did train


def test_peers_that_agree_train_as_each_would_alone():
    """Identical peers predict alike at every step, so the mimicry terms vanish and each follows plain CE."""
    alone, first, second = small_net(0), small_net(0), small_net(0)
    fit(alone, CrossEntropy(), toy_split(), RECIPE, seed=3, progress_seconds=None)
    fit(Cohort([first, second]), MutualLearning(), toy_split(), RECIPE, seed=3, progress_seconds=None)
    assert_same_weights(alone, first)
    assert_same_weights(alone, second)


def test_the_kl_term_is_zero_when_peers_agree():
    logits, labels = torch.randn(5, 7), torch.randint(0, 7, (5,))
    losses = mutual_learning_losses([logits, logits.clone(), logits.clone()], labels)
    torch.testing.assert_close(losses, F.cross_entropy(logits, labels).expand(3))


def test_two_peers_hand_computed():
    # p1 = (1/2, 1/2), p2 = (3/4, 1/4), label 0
    z1, z2 = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    kl_21 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    kl_12 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    losses = mutual_learning_losses([z1, z2], torch.tensor([0]))
    torch.testing.assert_close(losses, torch.tensor([math.log(2) + kl_21, -math.log(0.75) + kl_12]))


def test_three_peers_average_the_kl_over_the_other_two():
    z = [torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([[0.0, math.log(3.0)]])]
    kl_21 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    kl_31 = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    first = mutual_learning_losses(z, torch.tensor([1]))[0]
    torch.testing.assert_close(first, torch.tensor(math.log(2) + (kl_21 + kl_31) / 2))


def test_a_peers_gradient_comes_from_its_own_loss_alone():
    z1, z2 = torch.randn(4, 5, requires_grad=True), torch.randn(4, 5, requires_grad=True)
    labels = torch.randint(0, 5, (4,))
    (total_grad,) = torch.autograd.grad(mutual_learning_losses([z1, z2], labels).sum(), z1)
    (own_grad,) = torch.autograd.grad(mutual_learning_losses([z1, z2], labels)[0], z1)
    torch.testing.assert_close(total_grad, own_grad)


def test_the_cohort_predicts_as_the_average_of_its_peers():
    a, b = small_net(0).eval(), small_net(1).eval()
    x = torch.randn(6, 1, 4, 4)
    expected = (F.softmax(a(x), dim=1) + F.softmax(b(x), dim=1)) / 2
    torch.testing.assert_close(F.softmax(Cohort([a, b]).eval()(x), dim=1), expected)
    torch.testing.assert_close(F.softmax(ensemble_logits([a(x)]), dim=1), F.softmax(a(x), dim=1))


def test_learning_curves_are_each_peers_epoch_mean_cross_entropy():
    objective = MutualLearning()
    fit(Cohort([small_net(0), small_net(1)]), objective, toy_split(), RECIPE, seed=0, progress_seconds=None)
    curves = objective.curves(steps_per_epoch=3)
    assert len(curves) == 2 and all(len(c) == RECIPE.epochs for c in curves)
    first_epoch = torch.stack(objective.cross_entropy[:3]).mean(dim=0)
    torch.testing.assert_close(torch.tensor([c[0] for c in curves]), first_epoch)
    with pytest.raises(ValueError, match="not whole epochs"):
        objective.curves(steps_per_epoch=4)


def test_mutual_learning_refuses_a_lone_network():
    with pytest.raises(TypeError, match="Cohort"):
        fit(small_net(0), MutualLearning(), toy_split(), RECIPE, seed=0, progress_seconds=None)


def test_a_cohort_needs_a_peer():
    with pytest.raises(ValueError, match="at least one peer"):
        Cohort([])


def test_cohort_keeps_each_peer_unchanged_as_a_module():
    peer = small_net(0)
    cohort = Cohort([copy.deepcopy(peer), peer])
    assert cohort.peers[1] is peer
    assert sum(p.numel() for p in cohort.parameters()) == 2 * sum(p.numel() for p in peer.parameters())
