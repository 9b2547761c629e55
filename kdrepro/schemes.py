"""How teacher and student relate, three schemes sharing the one `fit` loop.

Offline: a frozen, already trained teacher guides the student; the teacher is kept out of every optimiser and in
evaluation mode (no dropout noise in its targets). Online: a cohort of peers trained together from scratch, each
learning from the others (`Cohort`, `MutualLearning`). Self: generations of one architecture, each learning from
its predecessor (`BornAgain`, `generations`).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrepro.data import Batch
from kdrepro.losses.response import check_hinton_weights, hinton_loss, kd_loss
from kdrepro.taps import forward_with_features
from kdrepro.train import Objective, predict_logits


def freeze(model: nn.Module) -> nn.Module:
    """Evaluation mode and no gradients: a teacher that cannot change."""
    model.eval()
    model.requires_grad_(False)
    return model


class ResponseDistillation(Objective):
    """Offline Hinton KD: hard_weight * CE + (1 - hard_weight) * T^2 KL(teacher^T || student^T).

    `teacher` is a frozen module called on every batch, or a tensor of its logits for every training example
    (rows aligned with the training split), computed once because the inputs never change between epochs.
    """

    def __init__(self, teacher: nn.Module | Tensor, temperature: float, hard_weight: float):
        check_hinton_weights(temperature, hard_weight)  # fail before any training, not at the first step
        self.teacher = teacher if isinstance(teacher, Tensor) else freeze(teacher)
        self.temperature = temperature
        self.hard_weight = hard_weight
        self.fixed_inputs = isinstance(teacher, Tensor)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        if isinstance(self.teacher, Tensor):
            teacher_logits = self.teacher[batch.index]
        else:
            teacher_logits = predict_logits(self.teacher, batch.x)
        return hinton_loss(model(batch.x), teacher_logits, batch.y, self.temperature, self.hard_weight)


class Teacher:
    """The offline scheme's teacher: a trained model, frozen, whose outputs an objective reads per batch.

    Decided here, once, for every method: when the inputs never change between epochs (no augmentation), the
    teacher's outputs for the whole training split are computed once and indexed by the batch's rows; otherwise
    the frozen module is called on every (augmented) batch. `rows` maps the student's training split (a subset,
    a transfer set) back to rows of the full split `train_x`.
    """

    def __init__(self, model: nn.Module, train_x: Tensor, rows: Tensor | None = None, augmented: bool = False):
        self.model = freeze(model)
        self._train_x, self._rows, self._augmented = train_x, rows, augmented
        self._outputs: Tensor | None = None

    def outputs(self, batch: Batch) -> Tensor:
        """The teacher's outputs (logits, or embeddings for a metric-learning teacher) for the batch."""
        if self._augmented:
            return predict_logits(self.model, batch.x)
        if self._outputs is None:
            self._outputs = predict_logits(self.model, self._train_x)
        index = batch.index if self._rows is None else self._rows.to(batch.index.device)[batch.index]
        return self._outputs[index]

    @torch.no_grad()
    def features(self, x: Tensor, names: Sequence[str]) -> tuple[Tensor, dict[str, Tensor]]:
        """The teacher's output and its modules' outputs called `names`, for the inputs x."""
        return forward_with_features(self.model, x, names)


def teacher_logits(teacher: nn.Module, x: Tensor) -> Tensor:
    """The frozen teacher's logits for a whole split: the offline scheme's targets, computed once."""
    return predict_logits(freeze(teacher), x)



class FeatureDistillation(Objective):
    """Offline feature-based distillation:

        L = task + weight * sum_{(s, t) in pairs} feature_loss(adapter_s(F_s(x)), F_t(x))

    where F_s, F_t are the outputs of the student's and teacher's modules named s and t, adapter_s is an owned,
    trained module (a FitNets regressor) or the identity, and task is the cross-entropy on labels, Hinton KD when
    a `temperature` is given, or nothing when `task` is False (FitNets' first stage: hints alone).
    """

    def __init__(self, teacher: nn.Module, pairs: Sequence[tuple[str, str]],
                 feature_loss: Callable[[Tensor, Tensor], Tensor], weight: float, *,
                 adapters: dict[str, nn.Module] | None = None, task: bool = True,
                 temperature: float | None = None, hard_weight: float = 1.0):
        if not weight >= 0:
            raise ValueError(f"the feature term's weight must be non-negative, got {weight}")
        if temperature is not None:
            check_hinton_weights(temperature, hard_weight)
        self.teacher = freeze(teacher)
        self.pairs = list(pairs)
        self.feature_loss = feature_loss
        self.weight = weight
        self.adapters = adapters or {}
        self.task = task
        self.temperature, self.hard_weight = temperature, hard_weight

    def parameters(self) -> list[nn.Parameter]:
        return [p for adapter in self.adapters.values() for p in adapter.parameters()]

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        with torch.no_grad():
            teacher_logits, teacher_features = forward_with_features(self.teacher, batch.x, [t for _, t in self.pairs])
        logits, features = forward_with_features(model, batch.x, [s for s, _ in self.pairs])
        total = sum(self._pair_loss(s, t, features[s], teacher_features[t]) for s, t in self.pairs)
        loss = self.weight * total
        if not self.task:
            return loss
        if self.temperature is None:
            return loss + F.cross_entropy(logits, batch.y)
        return loss + hinton_loss(logits, teacher_logits, batch.y, self.temperature, self.hard_weight)

    def _pair_loss(self, student_name: str, teacher_name: str, student: Tensor, teacher: Tensor) -> Tensor:
        adapter = self.adapters.get(student_name)
        try:
            return self.feature_loss(student if adapter is None else adapter(student), teacher)
        except ValueError as error:  # say which layers, not just which shapes
            raise ValueError(f"student layer {student_name!r} and teacher layer {teacher_name!r}: {error}") from None


# --- online: a cohort of peers that teach each other (Zhang et al. 2018, Deep Mutual Learning) -------------------

def ensemble_logits(logits: Sequence[Tensor]) -> Tensor:
    """log of the mean of the members' softmax outputs: softmax of it is the ensemble's averaged prediction."""
    probabilities = torch.stack([F.softmax(z, dim=-1) for z in logits]).mean(dim=0)
    return probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()


class Cohort(nn.Module):
    """K peers, possibly of different architectures, trained together as one module by the one `fit` loop.

    One optimiser over every peer's parameters steps each peer exactly as its own optimiser would (SGD and Adam
    update each parameter from its own gradient). Called, the cohort predicts as the ensemble of its peers;
    each peer is evaluated on its own as `cohort.peers[k]`.
    """

    def __init__(self, peers: Sequence[nn.Module]):
        super().__init__()
        if not peers:
            raise ValueError("a cohort needs at least one peer")
        self.peers = nn.ModuleList(peers)

    def forward(self, x: Tensor) -> Tensor:
        return ensemble_logits([peer(x) for peer in self.peers])


def mutual_learning_losses(logits: Sequence[Tensor], labels: Tensor) -> Tensor:
    """Each peer's loss (Zhang et al. 2018, eqs. 4 and 10), a (K,) tensor:

        L_k = H(y, p_k) + 1/(K-1) sum_{l != k} KL(p_l || p_k)

    The other peers' predictions p_l are targets (no gradient flows into them through L_k), so the gradient of
    sum_k L_k with respect to peer k's weights is the gradient of L_k alone. A single peer trains on H(y, p_1).
    """
    k = len(logits)
    losses = []
    for i, own in enumerate(logits):
        loss = F.cross_entropy(own, labels)
        if k > 1:
            mimicry = sum(kd_loss(own, other.detach(), 1.0) for j, other in enumerate(logits) if j != i)
            loss = loss + mimicry / (k - 1)
        losses.append(loss)
    return torch.stack(losses)


class MutualLearning(Objective):
    """Deep Mutual Learning: every peer of a `Cohort` minimises its own L_k on the same batch; `fit` minimises
    sum_k L_k, which updates all peers at once (the paper's Algorithm 1 updates them one after the other).

    Each step's per-peer cross-entropy H(y, p_k) is kept in `cross_entropy` (a list of (K,) tensors): the peers'
    learning curves."""

    def __init__(self):
        self.cross_entropy: list[Tensor] = []

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        if not isinstance(model, Cohort):
            raise TypeError(f"mutual learning trains a Cohort of peers, got {type(model).__name__}")
        logits = [peer(batch.x) for peer in model.peers]
        with torch.no_grad():
            self.cross_entropy.append(torch.stack([F.cross_entropy(z, batch.y) for z in logits]))
        return mutual_learning_losses(logits, batch.y).sum()

    def curves(self, steps_per_epoch: int) -> list[list[float]]:
        """Per peer, the mean training cross-entropy of each epoch."""
        steps = torch.stack(self.cross_entropy).cpu()
        if len(steps) % steps_per_epoch:
            raise ValueError(f"{len(steps)} steps are not whole epochs of {steps_per_epoch} steps")
        return steps.reshape(-1, steps_per_epoch, steps.shape[1]).mean(dim=1).T.tolist()


# --- self: born-again generations (Furlanello et al. 2018) ---------------------------------------------------------

def confidence_weights(teacher_logits: Tensor) -> Tensor:
    """CWTM's per-sample weights: the teacher's maximum probability, normalised over the batch,
    w_s = max_i p_{i,s} / sum_u max_i p_{i,u}  (Furlanello et al. 2018, section 3.2)."""
    confidence = F.softmax(teacher_logits, dim=-1).amax(dim=-1)
    return confidence / confidence.sum()


def permute_dark_knowledge(probabilities: Tensor, generator: torch.Generator) -> Tensor:
    """DKPP's targets: each row keeps its argmax probability in place, and its other probabilities are shuffled
    among the other classes by a random permutation per row (Furlanello et al. 2018, section 3.2)."""
    n, classes = probabilities.shape
    top = probabilities.argmax(dim=-1, keepdim=True).cpu()
    # the argmax first, then the other classes: in their order (sources) and in a random order (destinations)
    in_order = torch.arange(classes, dtype=torch.float).expand(n, classes).clone().scatter_(1, top, -1.0)
    shuffled = torch.rand(n, classes, generator=generator).scatter_(1, top, -1.0)
    sources, destinations = in_order.argsort(dim=1), shuffled.argsort(dim=1)
    device = probabilities.device
    moved = probabilities.gather(1, sources.to(device))
    return torch.empty_like(probabilities).scatter_(1, destinations.to(device), moved)


class BornAgain(Objective):
    """A generation learns from its predecessor, a network of its own architecture (Furlanello et al. 2018):

        "ban":  (1 - hard_weight) KL(p_teacher || p_student) + hard_weight H(y, p_student)   (BAN; +L with labels)
        "cwtm": sum_s w_s H(y_s, p_student,s), w = confidence_weights(teacher)                (labels, reweighted)
        "dkpp": KL(permute_dark_knowledge(p_teacher) || p_student), mixed with labels as "ban" is

    both at temperature 1. `teacher` is the predecessor (frozen, called on every batch) or its logits for every
    training example (rows aligned with the training split) when the inputs never change between epochs. DKPP
    draws a fresh permutation for every batch from a generator seeded by `seed`.
    """

    VARIANTS = ("ban", "cwtm", "dkpp")

    def __init__(self, teacher: nn.Module | Tensor, variant: str = "ban", hard_weight: float = 0.0, seed: int = 0):
        if variant not in self.VARIANTS:
            raise ValueError(f"unknown born-again variant {variant!r}; choose one of {', '.join(self.VARIANTS)}")
        check_hinton_weights(1.0, hard_weight)
        self.teacher = teacher if isinstance(teacher, Tensor) else freeze(teacher)
        self.variant, self.hard_weight = variant, hard_weight
        self.fixed_inputs = isinstance(teacher, Tensor)
        self.permutations = torch.Generator().manual_seed(seed)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        if isinstance(self.teacher, Tensor):
            teacher = self.teacher[batch.index]
        else:
            teacher = predict_logits(self.teacher, batch.x)
        logits = model(batch.x)
        if self.variant == "cwtm":
            per_sample = F.cross_entropy(logits, batch.y, reduction="none")
            return (confidence_weights(teacher) * per_sample).sum()
        if self.variant == "dkpp":
            targets = permute_dark_knowledge(F.softmax(teacher, dim=-1), self.permutations)
            teacher = targets.clamp_min(torch.finfo(targets.dtype).tiny).log()
        return hinton_loss(logits, teacher, batch.y, 1.0, self.hard_weight)


def generations(teacher: nn.Module, count: int,
                born_again: Callable[[nn.Module, int], nn.Module]) -> list[nn.Module]:
    """The sequence of teaching selves: [teacher, generation 1, ..., generation `count`], where
    `born_again(predecessor, k)` trains generation k from generation k - 1 alone."""
    chain = [teacher]
    for k in range(1, count + 1):
        chain.append(born_again(chain[-1], k))
    return chain
