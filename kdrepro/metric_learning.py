"""Deep metric learning: an embedding trained so that examples of one class lie close together, measured by
Recall@K on classes the network never saw in training (the setting of Park et al. 2019, section 4.1).
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrepro.data import Batch, Split


class Embedder(nn.Module):
    """A backbone whose output is the embedding, L2-normalised when `normalize` (the paper's triplet teacher is;
    its RKD students are not). The backbone's modules keep their names under `backbone.`."""

    def __init__(self, backbone: nn.Module, normalize: bool):
        super().__init__()
        self.backbone = backbone
        self.normalize = normalize

    def forward(self, x: Tensor) -> Tensor:
        embedding = self.backbone(x)
        return F.normalize(embedding, dim=1) if self.normalize else embedding


def triplet_loss(embeddings: Tensor, labels: Tensor, margin: float) -> Tensor:
    """max(0, ||a - p||^2 - ||a - n||^2 + margin) over every valid triplet of the batch (anchor and positive of
    one class, negative of another), averaged over the triplets that still violate the margin ("batch all";
    Park et al. 2019 sample triplets by distance-weighted sampling instead)."""
    if not (margin > 0 and math.isfinite(margin)):
        raise ValueError(f"the triplet margin must be positive and finite, got {margin}")
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
