"""How teacher and student relate, three schemes sharing the one `fit` loop.

Offline: a frozen, already trained teacher guides the student; the teacher is kept out of every optimiser and in
evaluation mode (no dropout noise in its targets). Online: a cohort of peers trained together from scratch, each
learning from the others (`CohortNet`, a network spec that builds a `Cohort`; the objective is
`objectives.response.MutualLearning`). Self: generations of one architecture, each an arm whose teacher is the
arm of the generation before (`generations`; the objectives are `objectives.response.BornAgain` and its
ablations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor, nn

from kdrepro.data import Batch, Data, Split
from kdrepro.losses.response import ensemble_logits
from kdrepro.taps import feature_shapes, forward_with_features
from kdrepro.train import predict_logits

if TYPE_CHECKING:
    from kdrepro import objectives
    from kdrepro.arms import Arm, Net


def freeze(model: nn.Module) -> nn.Module:
    """Evaluation mode and no gradients: a teacher that cannot change."""
    model.eval()
    model.requires_grad_(False)
    return model


class Teacher:
    """The offline scheme's teacher: a trained model, frozen, whose outputs an objective reads per batch.

    Decided here, once, for every method: when the inputs never change between epochs (no augmentation), the
    teacher's outputs (and the features a method reads) for the whole training split are computed once and
    indexed by the batch's rows; otherwise the frozen module is called on every (augmented) batch. `rows` maps
    the student's training split (a subset, a transfer set) back to rows of the full split `train_x`. A
    translation teacher reads the targets too: given the student's split `train`, its teacher-forced outputs on
    them are kept alike (`forced_outputs`).
    """

    def __init__(self, model: nn.Module, train_x: Tensor, rows: Tensor | None = None, augmented: bool = False,
                 train: Split | None = None):
        self.model = freeze(model)
        self._train_x, self._rows, self.augmented, self._train = train_x, rows, augmented, train
        self._outputs: Tensor | None = None
        self._forced: Tensor | None = None   # empty: decided to compute them for each batch
        self._features: dict[tuple[str, ...], tuple[Tensor, dict[str, Tensor]] | None] = {}

    def outputs(self, batch: Batch) -> Tensor:
        """The teacher's outputs (logits, or embeddings for a metric-learning teacher) for the batch."""
        if self.augmented:
            return predict_logits(self.model, batch.x)
        return self.split_outputs()[self._rows_of(batch)]

    def split_outputs(self) -> Tensor:
        """The outputs for every row of the full training split, computed on first use and kept."""
        if self._outputs is None:
            self._outputs = predict_logits(self.model, self._train_x)
        return self._outputs

    @torch.no_grad()
    def features(self, batch: Batch, names: Sequence[str]) -> tuple[Tensor, dict[str, Tensor]]:
        """The teacher's output and its modules' outputs called `names`, for the batch: like `outputs`, read from
        the whole training split's, computed once, unless the inputs change (augmented) or the split's features
        would take more than FEATURES_KEPT_BYTES (then computed for each batch)."""
        names = tuple(names)
        if names not in self._features:   # decided once for each set of names
            kept = not self.augmented and self._features_fit(names)
            self._features[names] = split_features(self.model, self._train_x, names) if kept else None
        if self._features[names] is None:
            return forward_with_features(self.model, batch.x, names)
        output, features = self._features[names]
        rows = self._rows_of(batch)
        return output[rows], {name: feature[rows] for name, feature in features.items()}

    @torch.no_grad()
    def forced_outputs(self, batch: Batch) -> Tensor:
        """A translation teacher's teacher-forced logits (B, T, V) on the batch's targets, T the batch's width: read
        from those on the student's whole training split, computed once (its targets never change between epochs),
        unless no split was given or they would take more than FEATURES_KEPT_BYTES (then computed for the batch).
        The encoder packs each source and the decoder reads only the prefix, so the padding a row is computed with
        changes none of its real positions."""
        if self._forced is None:   # decided at the first batch
            self._forced = forced_logits(self.model, self._train) if self._forced_fit() else torch.empty(0)
        if not len(self._forced):
            return self.model(batch.x, batch.y)
        return self._forced[batch.index, :batch.y.shape[1]]

    def _forced_fit(self) -> bool:
        if self._train is None or self.augmented:
            return False
        vocabulary = self.model(self._train.x[:1], self._train.y[:1]).shape[-1]
        return self._train.y.numel() * vocabulary * 4 <= FEATURES_KEPT_BYTES

    def _rows_of(self, batch: Batch) -> Tensor:
        """The batch's rows in the full training split."""
        return batch.index if self._rows is None else self._rows.to(batch.index.device)[batch.index]

    def _features_fit(self, names: tuple[str, ...]) -> bool:
        shapes = feature_shapes(self.model, tuple(self._train_x.shape[1:]), names)
        return len(self._train_x) * sum(math.prod(shape) for shape in shapes.values()) * 4 <= FEATURES_KEPT_BYTES


# the most memory a teacher's features (or a translation teacher's outputs) over the training split may keep
# (float32): the `cpu` profiles' take 25 to 50 MB; the paper profiles augment their images, and a corpus's outputs
# over a 50,000-word vocabulary would take terabytes, so their teachers compute them for each batch anyway
FEATURES_KEPT_BYTES = 2 ** 30


def split_features(model: nn.Module, x: Tensor, names: tuple[str, ...], chunk: int = 128
                   ) -> tuple[Tensor, dict[str, Tensor]]:
    """`forward_with_features` over every row of x, in chunks (as `predict_logits`), concatenated."""
    passes = [forward_with_features(model, x[start: start + chunk], names) for start in range(0, len(x), chunk)]
    return (torch.cat([output for output, _ in passes]),
            {name: torch.cat([features[name] for _, features in passes]) for name in names})


def forced_logits(model: nn.Module, split: Split, chunk: int = 128) -> Tensor:
    """A translation model's teacher-forced logits on every (source, target) row of the split, in chunks,
    concatenated (B, T, V), T the split's width."""
    return torch.cat([model(split.x[start: start + chunk], split.y[start: start + chunk])
                      for start in range(0, len(split), chunk)])


# --- online: a cohort of peers that teach each other (Zhang et al. 2018, Deep Mutual Learning) -------------------

class Cohort(nn.Module):
    """K peers, possibly of different architectures, trained together as one module by the one `fit` loop.

    One optimiser over every peer's parameters steps each peer exactly as its own optimiser would (SGD and Adam
    update each parameter from its own gradient). Called, the cohort predicts as the ensemble of its peers (the
    average of their softmax outputs); each peer is evaluated on its own as `cohort.peers[k]`. Several trained
    networks put in a cohort are an ensemble (BANE's ensemble of generations).
    """

    def __init__(self, peers: Sequence[nn.Module]):
        super().__init__()
        if not peers:
            raise ValueError("a cohort needs at least one peer")
        self.peers = nn.ModuleList(peers)

    def forward(self, x: Tensor) -> Tensor:
        return ensemble_logits([peer(x) for peer in self.peers])


@dataclass(frozen=True)
class CohortNet:
    """A cohort as a network spec (an `Arm`'s net): each peer a `Net`, initialised from its own stream `Net.init`.

    Pairing is by init names: a peer whose init is the independent network's ("a") starts from that network's
    weights at every seed; a second peer of the same architecture needs a name of its own ("a#2")."""

    peers: tuple[Net, ...]

    def __post_init__(self) -> None:
        inits = [peer.init for peer in self.peers]
        if len(set(inits)) != len(inits):
            raise ValueError(f"the peers' init names {inits} repeat: peers named alike would start from the same "
                             "weights and stay identical; give each peer an init name of its own")

    def build(self, seed: int, data: Data) -> Cohort:
        return Cohort([peer.build(seed, data) for peer in self.peers])


# --- self: born-again generations (Furlanello et al. 2018) ---------------------------------------------------------

def generations(teacher: Arm, objective: objectives.Objective, count: int, name: str) -> list[Arm]:
    """The sequence of teaching selves as arms: [teacher, generation 1, ..., generation `count`].

    Generation k ("<name>_k") has the teacher's architecture, recipe, data view and seed, starts from weights of
    its own (init "<name> k"), and learns by `objective` from generation k - 1 alone, its `teacher` arm."""
    chain = [teacher]
    for k in range(1, count + 1):
        chain.append(replace(teacher, name=f"{name}_{k}", net=replace(teacher.net, init=f"{name} {k}"),
                             objective=objective, teacher=chain[-1]))
    return chain
