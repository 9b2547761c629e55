"""The one training loop. Every method is an `Objective` plugged into `fit`; no method forks the loop.

A multi-stage method (FitNets: hints, then KD) is an arm of `arms.Stage`s: `arms.train_arm` calls `fit` once per
stage.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

import torch
from torch import Tensor, nn

from kdrepro.augment import random_crop, random_flip
from kdrepro.data import Batch, Split, batches
from kdrepro.objectives.base import Context, Objective
from kdrepro.seeds import derive, generator, seeded

if TYPE_CHECKING:
    from kdrepro.schemes import Teacher


FLOAT32_MAX = torch.finfo(torch.float32).max


class NonFiniteLossError(ArithmeticError):
    """The loss became NaN or infinite; the run stops before the bad step changes any weight."""


class NonFiniteWeightsError(NonFiniteLossError):
    """The weights became NaN or infinite (a step's gradient was not finite, or the step too large); the run stops
    instead of returning them."""


@dataclass(frozen=True)
class Recipe:
    """How a model is optimised: everything that, with the seed and the data, determines the trained weights;
    and whether validation accuracy is recorded after every epoch on the way (a learning curve, which leaves the
    weights as they would be without it)."""

    epochs: int
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"            # "sgd" (with momentum) or "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"          # "cosine", "constant", or "step" (x gamma at each milestone epoch)
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    max_norm: float | None = None     # cap on the L2 norm of each unit's incoming weights (Srivastava et al. 2014)
    clip_grad_norm: float | None = None  # cap on the gradient's global L2 norm, applied before each step
    bf16: bool = False                # each step's forward pass and loss under bfloat16 autocast (speed on a GPU)
    channels_last: bool = False       # images and convolution weights in channels-last memory (speed on a GPU)
    crop_padding: int = 0             # random translation by up to this many pixels
    flip: bool = False                # random horizontal mirror
    validation_curve: bool = False    # `arms.train_arm` hands `fit` the validation split

    def __post_init__(self) -> None:
        problems = [f"{name}={getattr(self, name)!r} must be a whole number" for name in ("epochs", "batch_size",
                    "crop_padding") if not _is_whole(getattr(self, name))]
        if problems:
            raise ValueError("impossible recipe: " + "; ".join(problems))
        if self.epochs < 1:
            problems.append(f"epochs={self.epochs} must be at least 1")
        if self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size} must be at least 1")
        if not 0 < self.lr <= FLOAT32_MAX:
            problems.append(f"lr={self.lr} must be positive and at most float32's largest value, {FLOAT32_MAX:.3g} "
                            "(the weights are float32); learning rates are usually between 1e-5 and 1")
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum={self.momentum} must be in [0, 1)")
        if not 0 <= self.weight_decay <= FLOAT32_MAX:
            problems.append(f"weight_decay={self.weight_decay} must be non-negative and finite")
        if not (self.gamma > 0 and math.isfinite(self.gamma)):
            problems.append(f"gamma={self.gamma} must be positive and finite: the learning rate is multiplied by it "
                            "at each milestone")
        if list(self.milestones) != sorted(set(self.milestones)):
            problems.append(f"milestones={self.milestones} must be increasing, each epoch once")
        if self.optimizer not in ("sgd", "adam"):
            problems.append(f"optimizer={self.optimizer!r} must be 'sgd' or 'adam'")
        if self.schedule not in ("cosine", "constant", "step"):
            problems.append(f"schedule={self.schedule!r} must be 'cosine', 'constant' or 'step'")
        if any(not 0 < m < self.epochs for m in self.milestones):
            problems.append(f"milestones={self.milestones} must lie strictly inside 0..{self.epochs} epochs")
        if self.max_norm is not None and not self.max_norm > 0:
            problems.append(f"max_norm={self.max_norm} must be positive")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            problems.append(f"clip_grad_norm={self.clip_grad_norm} must be positive")
        if self.crop_padding < 0:
            problems.append(f"crop_padding={self.crop_padding} must be non-negative")
        if problems:
            raise ValueError("impossible recipe: " + "; ".join(problems))

    @property
    def augments(self) -> bool:
        return self.crop_padding > 0 or self.flip

    def lr_factor(self, epoch: float) -> float:
        """Multiplier of the base learning rate at a (fractional) epoch."""
        if self.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))
        if self.schedule == "step":
            return self.gamma ** sum(epoch >= m for m in self.milestones)
        return 1.0


@dataclass
class History:
    """Per-epoch training loss (mean over the epoch's batches) and each of its terms, validation accuracy, and
    seconds."""

    loss: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0


def fit(model: nn.Module, objective: Objective, train: Split, recipe: Recipe, *, seed: int,
        teacher: Teacher | None = None, val: Split | None = None, name: str = "",
        progress_seconds: float | None = 10.0, log: Callable[[str], None] = print,
        sampler: Callable[[Split, int, torch.Generator], Iterable[Batch]] = batches) -> History:
    """Train `model` on `objective` over `train`; the same `seed` gives the same weights on the same machine.

    The objective's terms are summed into the loss that is minimised, and each is recorded per epoch. `teacher`
    is the offline scheme's frozen teacher, handed to the objective (None without one). Every random stream
    (batch order, augmentation, dropout masks, the objective's own draws) is derived from `seed`.
    `sampler(train, batch_size, generator)` yields an epoch's batches: shuffled by default, unless the objective
    asks for its own draw (metric learning's batches hold several examples of each class).

    Progress is one line at most every `progress_seconds` (None: silent), plus a closing line.
    """
    if teacher is not None and recipe.augments and not teacher.augmented:
        raise ValueError(f"{name or 'this run'}: the teacher's outputs, computed once on un-augmented inputs, cannot "
                         "follow augmented inputs; make the Teacher with augmented=True")
    torch.manual_seed(derive(seed, "dropout"))  # dropout masks come from the global generator
    order, augmentation = generator(seed, "order"), generator(seed, "augment")
    context = _context(objective, model, teacher, train, seed)
    sampler = objective.sampler() or sampler
    params = list(model.parameters()) + list(context.modules.parameters())
    optimizer = _optimizer(params, recipe)
    steps_per_epoch = math.ceil(len(train) / recipe.batch_size)
    history, started, last_report = History(), time.perf_counter(), time.perf_counter()
    model.train()
    context.modules.train()
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    device_type = next(model.parameters()).device.type
    for epoch in range(recipe.epochs):
        losses, epoch_terms = [], []
        for step, batch in enumerate(sampler(train, recipe.batch_size, order)):
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr * recipe.lr_factor(epoch + step / steps_per_epoch)
            if recipe.augments:
                batch = batch._replace(x=_augment(batch.x, recipe, augmentation))
            if recipe.channels_last and batch.x.dim() == 4:
                batch = batch._replace(x=batch.x.contiguous(memory_format=torch.channels_last))
            with torch.autocast(device_type, torch.bfloat16, enabled=recipe.bf16):
                terms = objective.terms(model, batch, context)
            loss = sum(terms.values())
            if not torch.isfinite(loss):
                raise _non_finite_loss(loss, model, params, name or "training", epoch, step, recipe)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(params, recipe.clip_grad_norm)
            optimizer.step()
            if recipe.max_norm is not None:
                _apply_max_norm(model, recipe.max_norm)
            losses.append(loss.detach())  # on the loss's device, whatever it is; one conversion an epoch
            epoch_terms.append(torch.stack([term.detach() for term in terms.values()]))
        _check_finite_weights(model, params, name or "training", epoch, recipe)
        history.loss.append(torch.stack(losses).mean().item())
        for term, value in zip(terms, torch.stack(epoch_terms).mean(dim=0).tolist()):
            history.terms.setdefault(term, []).append(value)
        if val is not None:
            history.val_accuracy.append(evaluate(model, val)["accuracy"])
            model.train()
        now = time.perf_counter()
        if progress_seconds is not None and (now - last_report >= progress_seconds or epoch + 1 == recipe.epochs):
            val_text = f"  val acc {history.val_accuracy[-1]:.2%}" if val is not None else ""
            log(f"[{name}] epoch {epoch + 1}/{recipe.epochs}  loss {history.loss[-1]:.4f}{val_text}  "
                f"{now - started:.1f}s")
            last_report = now
    history.seconds = time.perf_counter() - started
    model.eval()
    return history


def _context(objective: Objective, model: nn.Module, teacher: Teacher | None, train: Split, seed: int) -> Context:
    """The run's context: the teacher, the modules the objective owns, and the objective's own generator."""
    device = next(model.parameters()).device
    with seeded(seed, "modules"):  # an owned module's initial weights (a regressor's) come from a stream of their own
        owned = objective.modules(model, teacher, tuple(train.x.shape[1:]))
    return Context(teacher=teacher, modules=nn.ModuleDict(owned).to(device), generator=generator(seed, "objective"))


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 128) -> Tensor:
    """The model's logits for every row of x, in evaluation mode (no dropout). Chunks of 128: on a CPU larger
    ones run slower (a ResNet-20 over 1,024 Fashion-MNIST images: 0.6 s in chunks of 128, 1.3 s in one of 2,048)."""
    was_training = model.training
    model.eval()
    logits = torch.cat([model(x[i: i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return logits


def evaluate(model: nn.Module, split: Split) -> dict[str, float]:
    """Accuracy, error and the count of errors on a split."""
    return classification_metrics(predict_logits(model, split.x), split.y)


def classification_metrics(logits: Tensor, labels: Tensor) -> dict[str, float]:
    if not torch.isfinite(logits).all():  # argmax would count a NaN row as class 0, and score it
        raise ValueError("the model's logits hold NaN or infinite values, so its accuracy is undefined; "
                         "its weights or inputs are not finite: retrain it (a lower learning rate) or check the "
                         "inputs")
    errors = int((logits.argmax(dim=1) != labels).sum())
    return {"accuracy": 1 - errors / len(labels), "error": errors / len(labels), "errors": errors}


def _first_non_finite(model: nn.Module, params: list[Tensor]) -> str | None:
    """The name of the first parameter or buffer holding a NaN or an infinity (None when all are finite): one
    reduction and one synchronisation over all of them, so that checking once an epoch costs next to nothing."""
    named = [(n, t.detach()) for n, t in model.state_dict(keep_vars=True).items() if t.is_floating_point()]
    of_model = {id(p) for p in model.parameters()}
    named += [(f"the objective's parameter {i}", p.detach()) for i, p in enumerate(params) if id(p) not in of_model]
    if not named or torch.stack([t.isfinite().all() for _, t in named]).all():
        return None
    return next(n for n, t in named if not t.isfinite().all())


def _non_finite_loss(loss: Tensor, model: nn.Module, params: list[Tensor], name: str, epoch: int, step: int,
                     recipe: Recipe) -> NonFiniteLossError:
    """The error for a NaN or infinite loss, saying whether the weights were still finite (this step changed
    nothing) or an earlier step of the epoch had already made them non-finite."""
    where = f"{name}: loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}"
    bad = _first_non_finite(model, params)
    if bad is None:
        return NonFiniteLossError(f"{where}; stopped before updating the weights. Lower the learning rate "
                                  f"(lr={recipe.lr}) or check the inputs.")
    return NonFiniteWeightsError(f"{where}, because an earlier step of this epoch made the weights non-finite "
                                 f"({bad!r} first): its gradient was not finite or the step too large. Lower the "
                                 f"learning rate (lr={recipe.lr}) or clip the gradient (clip_grad_norm).")


def _check_finite_weights(model: nn.Module, params: list[Tensor], name: str, epoch: int, recipe: Recipe) -> None:
    """Stop, rather than go on or return weights that hold a NaN or an infinity, after an epoch whose every loss
    was finite (a non-finite gradient on its last step, say)."""
    bad = _first_non_finite(model, params)
    if bad is not None:
        raise NonFiniteWeightsError(f"{name}: the weights are not finite after epoch {epoch + 1} ({bad!r} first), "
                                    "though every loss was: a step's gradient was not finite or the step too large. "
                                    f"Lower the learning rate (lr={recipe.lr}) or clip the gradient (clip_grad_norm).")


def _is_whole(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _optimizer(params: list[nn.Parameter], recipe: Recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


def _augment(x: Tensor, recipe: Recipe, generator: torch.Generator) -> Tensor:
    x = random_crop(x, recipe.crop_padding, generator)
    return random_flip(x, generator) if recipe.flip else x


@torch.no_grad()
def _apply_max_norm(model: nn.Module, max_norm: float) -> None:
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.weight.copy_(torch.renorm(module.weight, p=2, dim=0, maxnorm=max_norm))
