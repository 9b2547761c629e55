"""The online scheme: a cohort of peers, declared as a `CohortNet`, trained together by `fit` on Deep Mutual
Learning's objective."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from kdrepro.arms import Arm, Net
from kdrepro.data import Batch, Data, Split
from kdrepro.losses.response import ensemble_logits, mimicry_losses, mutual_learning_losses
from kdrepro.objectives import Context
from kdrepro.objectives.response import MutualLearning
from kdrepro.objectives.task import CrossEntropy
from kdrepro.schemes import Cohort, CohortNet
from kdrepro.train import Recipe, fit

MLP = {"family": "mlp", "hidden": [16]}
RECIPE = Recipe(epochs=3, batch_size=32, lr=0.1)


def toy_split(n: int = 96) -> Split:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 4, 4, generator=generator)
    return Split(x, (x.flatten(1).sum(dim=1) > 0).long() + 2 * (x[:, 0, 0, 0] > 0).long())


def toy_data() -> Data:
    split = toy_split()
    return Data("toy", split, split, split, tuple("abcd"))


def small_net(init: str = "a") -> torch.nn.Module:
    return Net(MLP, init).build(0, toy_data())


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def train(model: torch.nn.Module, objective) -> object:
    return fit(model, objective, toy_split(), RECIPE, seed=3, progress_seconds=None)


# --- the cohort as a spec ---------------------------------------------------------------------------------------

def test_a_peer_starts_from_the_weights_of_the_net_with_its_init_name():
    cohort = CohortNet((Net(MLP, "a"), Net(MLP, "a#2"))).build(5, toy_data())
    assert isinstance(cohort, Cohort) and len(cohort.peers) == 2
    assert_same_weights(cohort.peers[0], Net(MLP, "a").build(5, toy_data()))
    assert not torch.equal(next(cohort.peers[1].parameters()), next(cohort.peers[0].parameters()))


def test_peers_named_alike_are_refused():
    with pytest.raises(ValueError, match=r"init names \['a', 'a'\] repeat"):
        CohortNet((Net(MLP, "a"), Net(MLP, "a")))


# --- training a cohort --------------------------------------------------------------------------------------------

def test_a_cohort_of_one_peer_is_plain_training():
    alone, peer = small_net(), small_net()
    train(alone, CrossEntropy())
    train(Cohort([peer]), MutualLearning())
    assert_same_weights(alone, peer)
    assert not torch.equal(next(small_net().parameters()), next(alone.parameters()))  # it did train


def test_peers_that_agree_train_as_each_would_alone():
    """Identical peers predict alike at every step, so the mimicry terms vanish and each follows plain CE."""
    alone, first, second = small_net(), small_net(), small_net()
    train(alone, CrossEntropy())
    train(Cohort([first, second]), MutualLearning())
    assert_same_weights(alone, first)
    assert_same_weights(alone, second)


def test_mutual_learning_terms_are_each_peers_cross_entropy_and_mimicry():
    peers = [small_net("a"), small_net("b")]
    x, y = toy_split().x[:8], toy_split().y[:8]
    terms = MutualLearning().terms(Cohort(peers), Batch(x, y, torch.arange(8)), Context())
    assert list(terms) == ["ce_1", "kl_1", "ce_2", "kl_2"]
    z1, z2 = peers[0](x), peers[1](x)
    q1, q2 = F.softmax(z1, dim=1), F.softmax(z2, dim=1)
    kl_21 = (q2 * (q2.log() - q1.log())).sum(dim=1).mean()  # KL(p_2 || p_1), averaged over the batch
    kl_12 = (q1 * (q1.log() - q2.log())).sum(dim=1).mean()
    torch.testing.assert_close(terms["ce_1"], F.cross_entropy(z1, y))
    torch.testing.assert_close(terms["ce_2"], F.cross_entropy(z2, y))
    torch.testing.assert_close(terms["kl_1"], kl_21)
    torch.testing.assert_close(terms["kl_2"], kl_12)


def test_a_lone_peer_has_no_mimicry_term():
    x, y = toy_split().x[:8], toy_split().y[:8]
    assert list(MutualLearning().terms(Cohort([small_net()]), Batch(x, y, torch.arange(8)), Context())) == ["ce_1"]


def test_learning_curves_are_each_peers_terms_per_epoch():
    history = train(Cohort([small_net("a"), small_net("b")]), MutualLearning())
    assert set(history.terms) == {"ce_1", "kl_1", "ce_2", "kl_2"}
    assert all(len(curve) == RECIPE.epochs for curve in history.terms.values())
    total = [sum(history.terms[t][epoch] for t in history.terms) for epoch in range(RECIPE.epochs)]
    assert total == pytest.approx(history.loss, rel=1e-5)
    assert history.terms["ce_1"][-1] < history.terms["ce_1"][0]  # each peer's own curve, falling


def test_mutual_learning_refuses_a_lone_network():
    with pytest.raises(TypeError, match="Cohort"):
        train(small_net(), MutualLearning())


# --- the loss terms -------------------------------------------------------------------------------------------------

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
    torch.testing.assert_close(mimicry_losses([z1, z2]), torch.tensor([kl_21, kl_12]))


def test_three_peers_average_the_kl_over_the_other_two():
    z = [torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([[0.0, math.log(3.0)]])]
    kl_21 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    kl_31 = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    first = mutual_learning_losses(z, torch.tensor([1]))[0]
    torch.testing.assert_close(first, torch.tensor(math.log(2) + (kl_21 + kl_31) / 2))


def test_a_lone_peers_mimicry_is_zero():
    torch.testing.assert_close(mimicry_losses([torch.randn(3, 4)]), torch.zeros(1))


def test_a_peers_gradient_comes_from_its_own_loss_alone():
    z1, z2 = torch.randn(4, 5, requires_grad=True), torch.randn(4, 5, requires_grad=True)
    labels = torch.randint(0, 5, (4,))
    (total_grad,) = torch.autograd.grad(mutual_learning_losses([z1, z2], labels).sum(), z1)
    (own_grad,) = torch.autograd.grad(mutual_learning_losses([z1, z2], labels)[0], z1)
    torch.testing.assert_close(total_grad, own_grad)


# --- the cohort as a module -----------------------------------------------------------------------------------------

def test_the_cohort_predicts_as_the_average_of_its_peers():
    a, b = small_net("a").eval(), small_net("b").eval()
    x = torch.randn(6, 1, 4, 4)
    expected = (F.softmax(a(x), dim=1) + F.softmax(b(x), dim=1)) / 2
    torch.testing.assert_close(F.softmax(Cohort([a, b]).eval()(x), dim=1), expected)
    torch.testing.assert_close(F.softmax(ensemble_logits([a(x)]), dim=1), F.softmax(a(x), dim=1))


def test_a_cohort_needs_a_peer():
    with pytest.raises(ValueError, match="at least one peer"):
        Cohort([])


def test_cohort_keeps_each_peer_unchanged_as_a_module():
    peer = small_net()
    cohort = Cohort([copy.deepcopy(peer), peer])
    assert cohort.peers[1] is peer
    assert sum(p.numel() for p in cohort.parameters()) == 2 * sum(p.numel() for p in peer.parameters())


def test_a_cohort_arms_wiring_names_each_peer():
    arm = Arm("dml", CohortNet((Net(MLP, "a"), Net({"family": "mlp", "hidden": [8]}, "b"))), MutualLearning(), RECIPE)
    assert arm.describe() == ("dml: MutualLearning(); net CohortNet(peers=(Net(architecture=mlp hidden=[16], init='a'), "
                              "Net(architecture=mlp hidden=[8], init='b'))); 3 epochs")
