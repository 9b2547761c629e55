"""Metric learning (kdrepro.metric_learning): the triplet loss and its objective, class-balanced batches, the
embedding network and its spec, the view on classes never trained on, and Recall@K."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from kdrepro.data import Batch, Data, Split
from kdrepro.metric_learning import (Embedder, EmbeddingNet, RecallAtK, class_balanced_batches, class_ranges, embed,
                                     held_out_classes, recall_at_k, triplet_loss)
from kdrepro.models import ResNet
from kdrepro.objectives import Context
from kdrepro.objectives.task import Triplet
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


def test_the_triplet_objective_is_the_triplet_loss_of_the_models_embeddings():
    batch = Batch(torch.tensor([[0.0], [0.1], [0.2]]), torch.tensor([0, 0, 1]), torch.arange(3))
    terms = Triplet(margin=0.2, per_class=2).terms(nn.Identity(), batch, Context())
    assert list(terms) == ["triplet"] and terms["triplet"].item() == pytest.approx(0.185)  # worked out above


@pytest.mark.parametrize("margin", [0.0, -0.2, float("nan")])
def test_a_triplet_margin_that_is_not_positive_is_refused_when_the_objective_is_declared(margin):
    with pytest.raises(ValueError, match="the triplet margin must be positive and finite"):
        Triplet(margin, per_class=4)


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


def test_fit_draws_the_triplet_objectives_class_balanced_batches():
    torch.manual_seed(0)
    split = Split(torch.randn(40, 1, 8, 8), torch.arange(40) % 4)
    seen = []

    class Spy(Triplet):
        def terms(self, model, batch, context):
            seen.append(torch.bincount(batch.y, minlength=4).tolist())
            return super().terms(model, batch, context)

    model = EmbeddingNet(ResNet(8, (4, 4, 4, 8), num_classes=3, in_channels=1), normalize=True)
    fit(model, Spy(0.2, per_class=4), split, Recipe(epochs=1, batch_size=16), seed=0, progress_seconds=None)
    assert seen == [[4, 4, 4, 4]] * 3


def test_recall_at_k_counts_queries_with_a_same_class_neighbour_among_the_k_nearest():
    embeddings = torch.tensor([[0.0], [0.1], [5.0], [5.2], [10.0]])
    labels = torch.tensor([0, 0, 1, 2, 1])
    recalls = recall_at_k(embeddings, labels, ks=(1, 2, 4))
    assert recalls == pytest.approx({1: 2 / 5, 2: 3 / 5, 4: 4 / 5})


def points(values, labels) -> Split:
    return Split(torch.tensor(values)[:, None], torch.tensor(labels))


def test_recall_at_k_is_measured_on_the_test_split_and_the_validation_split_when_there_is_one():
    test = points([0.0, 0.1, 5.0, 5.2, 10.0], [0, 0, 1, 2, 1])           # the recalls worked out above
    val = points([0.0, 1.0, 1.5, 9.0], [3, 4, 3, 4])
    # val: 0.0's nearest is 1.0 (class 4, a miss), then 1.5 (class 3); 1.0's nearest is 1.5 (3, a miss), then 0.0
    # (3, a miss), then 9.0 (4); 1.5's is 1.0 (a miss), then 0.0 (a hit); 9.0's is 1.5 (a miss), then 1.0 (a hit)
    with_val = Data("toy", test, val, test, ("a", "b", "c", "d", "e"))
    assert RecallAtK((1, 2))(nn.Identity(), with_val) == pytest.approx(
        {"recall_at_1": 2 / 5, "recall_at_2": 3 / 5, "val_recall_at_1": 0.0, "val_recall_at_2": 3 / 4})
    without_val = Data("toy", test, points([], []), test, ("a", "b", "c", "d", "e"))
    assert RecallAtK((1, 2))(nn.Identity(), without_val) == pytest.approx({"recall_at_1": 2 / 5, "recall_at_2": 3 / 5})


def test_the_embedder_normalises_only_when_asked():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 12, 12)
    backbone = ResNet(8, (4, 4, 4, 8), num_classes=6, in_channels=1)
    assert torch.allclose(embed(EmbeddingNet(backbone, True), x).norm(dim=1), torch.ones(4))
    assert not torch.allclose(embed(EmbeddingNet(backbone, False), x).norm(dim=1), torch.ones(4))


def toy_data(classes: int = 4) -> Data:
    x = torch.randn(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(20) % classes
    return Data("toy", Split(x, y), Split(x[:8], y[:8]), Split(x[:12], y[:12]), tuple("abcd"))


def test_an_embedder_spec_builds_its_embedding_size_from_its_init_stream_normalised_or_not():
    data = toy_data()
    spec = Embedder({"family": "resnet", "depth": 8, "channels": (4, 4, 4, 8)}, dim=5, normalize=False)
    model = spec.build(0, data)
    assert isinstance(model, EmbeddingNet) and embed(model, data.test.x).shape == (12, 5)
    normalised = Embedder(spec.architecture, 5, normalize=True).build(0, data)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), normalised.parameters()))
    for other in (Embedder(spec.architecture, 5, False, init="teacher").build(0, data), spec.build(1, data)):
        assert not torch.equal(model.backbone.fc.weight, other.backbone.fc.weight)


def test_the_held_out_view_trains_on_some_classes_and_measures_the_others():
    data = toy_data()
    view = held_out_classes(data, (0, 2))
    assert view.train.y.unique().tolist() == [0, 2] and len(view.train) == 10
    assert view.val.y.unique().tolist() == [1, 3] and view.test.y.unique().tolist() == [1, 3]
    assert torch.equal(view.train.x, data.train.x[data.train.y % 2 == 0])
    assert view.classes == data.classes and view.name == "toy, trained on classes 0, 2"
    assert view.key() != held_out_classes(data, (1, 3)).key()  # as many images, other classes: another key


def test_the_held_out_view_draws_each_seeds_training_images_from_the_training_classes_alone():
    data = toy_data()
    pooled = replace(data, train=data.train.subset(torch.arange(4)), pool=data.train)  # 4 of 20 drawn per seed
    view = held_out_classes(pooled, (0, 2))
    assert view.pool.y.unique().tolist() == [0, 2] and len(view.pool) == 10
    for seed in range(5):
        assert set(view.for_seed(seed).train.y.tolist()) <= {0, 2}


def test_class_ranges_write_each_run_of_consecutive_classes_as_a_range():
    assert class_ranges((4, 0, 1, 2, 3)) == "0-4"
    assert class_ranges((9, 0, 1, 5, 7, 8)) == "0-1, 5, 7-9"
