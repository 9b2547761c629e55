"""Deep metric learning: an embedding trained so that examples of one class lie close together, measured by
Recall@K on classes the network never saw in training (the setting of Park et al. 2019, section 4.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrepro.data import Batch, Data, Split
from kdrepro.measures import Measure
from kdrepro.models import build
from kdrepro.seeds import seeded


class EmbeddingNet(nn.Module):
    """A backbone whose output is the embedding, L2-normalised when `normalize` (the paper's triplet teacher is;
    its RKD students are not). The backbone's modules keep their names under `backbone.`."""

    def __init__(self, backbone: nn.Module, normalize: bool):
        super().__init__()
        self.backbone = backbone
        self.normalize = normalize

    def forward(self, x: Tensor) -> Tensor:
        embedding = self.backbone(x)
        return F.normalize(embedding, dim=1) if self.normalize else embedding


@dataclass(frozen=True)
class Embedder:
    """A network to train that embeds, as `arms.Net` is one that classifies: a `kdrepro.models.build`
    architecture whose last layer outputs `dim` numbers, L2-normalised when `normalize`, initialised from the
    stream `init` of the run's seed. Normalising adds no weight: embedders of one architecture, size and init
    start from the same weights whether they normalise or not."""

    architecture: str | dict
    dim: int
    normalize: bool
    init: str = "student"

    def build(self, seed: int, data: Data) -> EmbeddingNet:
        with seeded(seed, "init", self.init):
            backbone = build(self.architecture, self.dim, data.input_shape[0], data.input_shape)
        return EmbeddingNet(backbone, self.normalize)


def held_out_classes(data: Data, train_classes: Sequence[int]) -> Data:
    """Metric learning's view of a labelled dataset (Park et al. 2019, section 4.1): the training images of
    `train_classes` alone, and the validation and test images of every other class, on which Recall@K is
    measured, so the embedding is judged on classes it never saw; a pool that seeds draw their training images
    from (`Data.for_seed`) keeps the training classes alone too. Its name says which classes train (the name is in
    the data's cache key)."""
    seen = torch.tensor(list(train_classes))

    def keep(split: Split, trained: bool) -> Split:
        return split.subset((torch.isin(split.y, seen.to(split.y.device)) == trained).nonzero(as_tuple=True)[0])

    return replace(data, name=f"{data.name}, trained on classes {class_ranges(train_classes)}",
                   train=keep(data.train, True), val=keep(data.val, False), test=keep(data.test, False),
                   pool=None if data.pool is None else keep(data.pool, True))


def class_ranges(classes: Sequence[int]) -> str:
    """'0-4, 7, 9-10': sorted classes, each run of consecutive ones as a range."""
    runs: list[list[int]] = []
    for c in sorted(set(classes)):
        if runs and c == runs[-1][-1] + 1:
            runs[-1].append(c)
        else:
            runs.append([c])
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def triplet_loss(embeddings: Tensor, labels: Tensor, margin: float) -> Tensor:
    """max(0, ||a - p||^2 - ||a - n||^2 + margin) over every valid triplet of the batch (anchor and positive of
    one class, negative of another), averaged over the triplets that still violate the margin ("batch all";
    Park et al. 2019 sample triplets by distance-weighted sampling instead)."""
    check_margin(margin)
    squared = torch.cdist(embeddings, embeddings).pow(2)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    valid = positive.unsqueeze(2) & ~same.unsqueeze(1)  # [a, p, n]
    if not valid.any():
        raise ValueError("the batch holds no triplet: it needs two examples of one class and one of another; "
                         "draw batches with class_balanced_batches")
    losses = (squared.unsqueeze(2) - squared.unsqueeze(1) + margin).clamp_min(0)[valid]
    active = losses > 0
    return losses[active].mean() if active.any() else losses.sum()


def check_margin(margin: float) -> None:
    if not (margin > 0 and math.isfinite(margin)):
        raise ValueError(f"the triplet margin must be positive and finite, got {margin}")


def class_balanced_batches(split: Split, batch_size: int, generator: torch.Generator | None = None,
                           per_class: int = 4) -> Iterator[Batch]:
    """An epoch of batches that each hold `batch_size // per_class` random classes (all of them when there are
    fewer) with an equal share of the batch each, at least `per_class` examples, so every batch holds positives
    for the triplet loss. The signature is `kdrepro.data.batches`', so `fit` takes it as its `sampler`; an epoch
    has as many batches as a plain one."""
    classes = split.y.unique()
    classes_per_batch = min(batch_size // per_class, len(classes))
    if classes_per_batch < 2:
        raise ValueError(f"a batch of {batch_size} cannot hold two classes of {per_class} examples "
                         f"({len(classes)} classes in the split)")
    members = [(split.y == c).nonzero(as_tuple=True)[0] for c in classes]
    share = batch_size // classes_per_batch
    for _ in range((len(split) + batch_size - 1) // batch_size):
        chosen = torch.randperm(len(classes), generator=generator)[:classes_per_batch]
        index = torch.cat([_draw(members[c], share, generator) for c in chosen.tolist()])
        yield Batch(split.x[index], split.y[index], index)


def _draw(rows: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
    """`count` of `rows`, without repetition unless the class has fewer examples than that."""
    if len(rows) >= count:
        return rows[torch.randperm(len(rows), generator=generator)[:count]]
    return rows[torch.randint(len(rows), (count,), generator=generator)]


@torch.no_grad()
def embed(model: nn.Module, x: Tensor, batch_size: int = 2048) -> Tensor:
    """The model's embeddings of every row of x, in evaluation mode."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i: i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def recall_at_k(embeddings: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 2, 4, 8)) -> dict[int, float]:
    """Recall@K: the fraction of queries with at least one example of their class among their K nearest
    neighbours (Euclidean distance, the query itself excluded), every example a query in turn."""
    distances = torch.cdist(embeddings, embeddings)
    distances.fill_diagonal_(float("inf"))
    neighbours = distances.topk(max(ks), dim=1, largest=False).indices
    hits = labels[neighbours] == labels.unsqueeze(1)
    return {k: hits[:, :k].any(dim=1).float().mean().item() for k in ks}


@dataclass(frozen=True)
class RecallAtK(Measure):
    """Recall@K of the model's embeddings for each K of `ks`, on the test split ("recall_at_K") and, when there is
    one, the validation split ("val_recall_at_K"). Measure the `held_out_classes` view: both splits then hold
    only classes the model never trained on."""

    ks: tuple[int, ...] = (1, 2, 4, 8)

    def __call__(self, model: nn.Module, data: Data) -> dict[str, Any]:
        splits = {"": data.test, "val_": data.val} if len(data.val) else {"": data.test}
        return {f"{prefix}recall_at_{k}": recall
                for prefix, split in splits.items()
                for k, recall in recall_at_k(embed(model, split.x), split.y, self.ks).items()}
