import pytest
import torch

from kdrepro.data import Split
from kdrepro.metric_learning import Embedder, class_balanced_batches, embed, recall_at_k, triplet_loss
from kdrepro.models import ResNet
from kdrepro.relation_distillation import TripletObjective
from kdrepro.train import Recipe, fit


def test_triplet_loss_averages_the_triplets_that_violate_the_margin():
    embeddings = torch.tensor([[0.0], [0.1], [0.2]])
    labels = torch.tensor([0, 0, 1])
    # (a=0, p=1, n=2): 0.01 - 0.04 + 0.2 = 0.17; (a=1, p=0, n=2): 0.01 - 0.01 + 0.2 = 0.2; class 1 has no positive
    assert triplet_loss(embeddings, labels, margin=0.2).item() == pytest.approx(0.185)


def test_triplet_loss_is_zero_when_every_negative_is_beyond_the_margin():
    embeddings = torch.tensor([[0.0], [0.1], [5.0], [5.1]], requires_grad=True)
    loss = triplet_loss(embeddings, torch.tensor([0, 0, 1, 1]), margin=0.2)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(embeddings.grad).all()


def test_a_batch_without_triplets_is_refused():
    with pytest.raises(ValueError, match="no triplet"):
        triplet_loss(torch.randn(3, 2), torch.tensor([0, 1, 2]), margin=0.2)


def test_balanced_batches_hold_an_equal_share_of_each_chosen_class():
    y = torch.arange(200) % 10
    split = Split(torch.arange(200).float()[:, None], y)
    batches = list(class_balanced_batches(split, 32, torch.Generator().manual_seed(0), per_class=4))
    assert len(batches) == 7                                   # as many as a plain epoch: ceil(200 / 32)
    for batch in batches:
        counts = torch.bincount(batch.y, minlength=10)
        assert sorted(counts[counts > 0].tolist()) == [4] * 8  # 32 // 4 classes of 4 examples
        assert len(batch.index.unique()) == 32                 # no example twice: each class has 20
        assert torch.equal(split.y[batch.index], batch.y)


def test_with_few_classes_every_class_is_in_every_batch():
    split = Split(torch.zeros(100, 1), torch.arange(100) % 5)
    for batch in class_balanced_batches(split, 128, torch.Generator().manual_seed(0)):
        assert torch.bincount(batch.y).tolist() == [25] * 5


def test_recall_at_k_counts_queries_with_a_same_class_neighbour_among_the_k_nearest():
    embeddings = torch.tensor([[0.0], [0.1], [5.0], [5.2], [10.0]])
    labels = torch.tensor([0, 0, 1, 2, 1])
    recalls = recall_at_k(embeddings, labels, ks=(1, 2, 4))
    assert recalls == pytest.approx({1: 2 / 5, 2: 3 / 5, 4: 4 / 5})


def test_the_embedder_normalises_only_when_asked():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 12, 12)
    backbone = ResNet(8, (4, 4, 4, 8), num_classes=6, in_channels=1)
    assert torch.allclose(embed(Embedder(backbone, True), x).norm(dim=1), torch.ones(4))
    assert not torch.allclose(embed(Embedder(backbone, False), x).norm(dim=1), torch.ones(4))


def test_fit_draws_class_balanced_batches_when_given_the_sampler():
    torch.manual_seed(0)
    split = Split(torch.randn(40, 1, 8, 8), torch.arange(40) % 4)
    seen = []

    class Spy(TripletObjective):
        def loss(self, model, batch):
            seen.append(torch.bincount(batch.y, minlength=4).tolist())
            return super().loss(model, batch)

    model = Embedder(ResNet(8, (4, 4, 4, 8), num_classes=3, in_channels=1), normalize=True)
    fit(model, Spy(0.2), split, Recipe(epochs=1, batch_size=16), seed=0, progress_seconds=None,
        sampler=class_balanced_batches)
    assert seen == [[4, 4, 4, 4]] * 3
