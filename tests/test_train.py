import math

import pytest
import torch
from torch import nn

from kdrepro.augment import random_crop, random_flip
from kdrepro.data import Batch, Split
from kdrepro.models import mlp
from kdrepro.objectives import Context, Objective
from kdrepro.objectives.response import ResponseKD
from kdrepro.objectives.task import CrossEntropy
from kdrepro.schemes import Teacher
from kdrepro.seeds import seeded
from kdrepro.train import NonFiniteLossError, Recipe, evaluate, fit, predict_logits


def toy_split(n: int = 64, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 4, 4, generator=g)
    return Split(x, (x.mean(dim=(1, 2, 3)) > 0).long())


def toy_model(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    with seeded(seed, "init"):
        return mlp((1, 4, 4), (16,), 2, dropout=dropout)


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_same_seed_gives_the_same_weights_and_losses():
    recipe = Recipe(epochs=3, batch_size=16, lr=0.1, crop_padding=1)
    runs = []
    for _ in range(2):
        model = toy_model(dropout=0.3)
        history = fit(model, CrossEntropy(), toy_split(), recipe, seed=7, progress_seconds=None)
        runs.append((history.loss, weights(model)))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_another_seed_gives_other_weights():
    recipe = Recipe(epochs=2, batch_size=16, lr=0.1)
    a, b = toy_model(), toy_model()
    fit(a, CrossEntropy(), toy_split(), recipe, seed=1, progress_seconds=None)
    fit(b, CrossEntropy(), toy_split(), recipe, seed=2, progress_seconds=None)
    assert not torch.equal(weights(a)[0], weights(b)[0])


def test_training_learns_a_separable_task():
    model = toy_model()
    fit(model, CrossEntropy(), toy_split(256), Recipe(epochs=20, batch_size=32, lr=0.1), seed=0,
        progress_seconds=None)
    assert evaluate(model, toy_split(256, seed=1))["accuracy"] > 0.9


class ExplodingObjective(Objective):
    def terms(self, model, batch, context):
        return {"nan": model(batch.x).sum() * math.nan}


def test_a_nan_loss_stops_the_run_before_any_weight_changes():
    model = toy_model()
    before = weights(model)
    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 1, step 1.*Lower the learning rate"):
        fit(model, ExplodingObjective(), toy_split(), Recipe(epochs=1), seed=0, name="exploding",
            progress_seconds=None)
    assert all(torch.equal(a, b) for a, b in zip(before, weights(model)))


def test_an_infinite_loss_from_a_huge_learning_rate_is_caught():
    with pytest.raises(NonFiniteLossError):
        fit(toy_model(), CrossEntropy(), toy_split(), Recipe(epochs=50, batch_size=8, lr=1e30, momentum=0.0),
            seed=0, progress_seconds=None)


def test_the_teacher_stays_frozen_in_eval_mode_and_out_of_the_optimiser():
    teacher = toy_model(seed=1, dropout=0.5)
    teacher.train()
    before = weights(teacher)
    offline = Teacher(teacher, toy_split().x)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    student = toy_model(seed=2)
    fit(student, ResponseKD(temperature=4.0, hard_weight=0.1), toy_split(), Recipe(epochs=2, batch_size=16, lr=0.5),
        seed=0, teacher=offline, progress_seconds=None)
    assert all(torch.equal(a, b) for a, b in zip(before, weights(teacher)))


def test_cached_teacher_logits_train_exactly_like_the_teacher_module():
    split, teacher = toy_split(), toy_model(seed=1)
    recipe = Recipe(epochs=2, batch_size=16, lr=0.2)
    a, b = toy_model(seed=2), toy_model(seed=2)
    fit(a, ResponseKD(4.0, 0.2), split, recipe, seed=0, teacher=Teacher(teacher, split.x, augmented=True),
        progress_seconds=None)
    fit(b, ResponseKD(4.0, 0.2), split, recipe, seed=0, teacher=Teacher(teacher, split.x), progress_seconds=None)
    for p, q in zip(weights(a), weights(b)):
        torch.testing.assert_close(p, q)


def test_cached_teacher_logits_refuse_augmented_inputs():
    split = toy_split()
    with pytest.raises(ValueError, match="cannot follow augmented inputs"):
        fit(toy_model(), ResponseKD(4.0, 0.1), split, Recipe(epochs=1, crop_padding=2), seed=0,
            teacher=Teacher(toy_model(seed=1), split.x), progress_seconds=None)


@pytest.mark.parametrize("field, value", [("epochs", 0), ("batch_size", 0), ("lr", -0.1), ("lr", math.nan),
                                          ("momentum", 1.0), ("optimizer", "lbfgs"), ("schedule", "linear"),
                                          ("max_norm", 0.0), ("weight_decay", -1.0), ("crop_padding", -1),
                                          ("clip_grad_norm", 0.0)])
def test_impossible_recipes_are_rejected(field, value):
    with pytest.raises(ValueError, match=f"impossible recipe: {field}="):
        Recipe(epochs=5, **{field: value}) if field != "epochs" else Recipe(epochs=value)


def test_milestones_must_lie_inside_training():
    with pytest.raises(ValueError, match="milestones"):
        Recipe(epochs=10, schedule="step", milestones=(5, 10))


def test_learning_rate_schedules():
    cosine = Recipe(epochs=10)
    assert [cosine.lr_factor(e) for e in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0])
    step = Recipe(epochs=10, schedule="step", milestones=(3, 6), gamma=0.2)
    assert [step.lr_factor(e) for e in (0, 2.9, 3, 6.5)] == pytest.approx([1.0, 1.0, 0.2, 0.04])
    assert Recipe(epochs=10, schedule="constant").lr_factor(7) == 1.0


def test_max_norm_caps_every_units_incoming_weights():
    model = toy_model()
    fit(model, CrossEntropy(), toy_split(), Recipe(epochs=3, lr=2.0, max_norm=0.5), seed=0, progress_seconds=None)
    for layer in (m for m in model.modules() if isinstance(m, nn.Linear)):
        assert layer.weight.norm(dim=1).max().item() <= 0.5 + 1e-5


def test_gradient_clipping_bounds_the_size_of_a_step():
    # plain SGD with lr 1: the first step moves the weights by exactly the (clipped) gradient
    model = toy_model()
    before = torch.cat([p.flatten() for p in weights(model)])
    recipe = Recipe(epochs=1, batch_size=64, lr=1.0, momentum=0.0, schedule="constant", clip_grad_norm=0.01)
    fit(model, CrossEntropy(), toy_split(64), recipe, seed=0, progress_seconds=None)
    after = torch.cat([p.flatten() for p in weights(model)])
    assert (after - before).norm().item() == pytest.approx(0.01, rel=1e-3)


def test_progress_is_one_line_per_interval_plus_the_last_epoch():
    lines: list[str] = []
    fit(toy_model(), CrossEntropy(), toy_split(), Recipe(epochs=5), seed=0, name="quiet",
        progress_seconds=3600, log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("[quiet] epoch 5/5")
    lines.clear()
    fit(toy_model(), CrossEntropy(), toy_split(), Recipe(epochs=3), seed=0, val=toy_split(16, 1),
        progress_seconds=0, log=lines.append)
    assert len(lines) == 3 and "val acc" in lines[0]


def test_predict_logits_uses_eval_mode_and_restores_the_mode():
    model = toy_model(dropout=0.9)
    model.train()
    x = toy_split().x
    torch.testing.assert_close(predict_logits(model, x), predict_logits(model, x))
    assert model.training


def test_random_crop_translates_by_at_most_the_padding():
    x = torch.zeros(200, 1, 5, 5)
    x[:, :, 2, 2] = 1.0  # one bright pixel in the centre
    out = random_crop(x, padding=2, generator=torch.Generator().manual_seed(0))
    rows, cols = out[:, 0].nonzero(as_tuple=True)[1:]
    assert out.sum().item() == 200  # nothing falls off: a shift of 2 keeps the centre pixel inside
    assert set(rows.tolist()) == set(range(5)) and set(cols.tolist()) == set(range(5))


def test_random_flip_mirrors_about_half_the_images():
    x = torch.arange(4.0).repeat(1000, 1, 1, 1)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = (out[:, 0, 0, 0] == 3.0).float().mean().item()
    assert 0.45 < flipped < 0.55 and torch.equal(out[out[:, 0, 0, 0] == 3.0][0, 0, 0], torch.tensor([3., 2, 1, 0]))


def test_batch_index_lines_up_with_cached_targets():
    """The teacher's cached outputs are read at the batch's rows: row 1's are (0, 9), which the student matches."""
    teacher = Teacher(nn.Flatten(), torch.tensor([[[[9.0, 0.0]]], [[[0.0, 9.0]]]]))
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 2))
    batch = Batch(torch.zeros(1, 1, 1, 1), torch.tensor([0]), torch.tensor([1]))
    with torch.no_grad():
        model[1].weight.zero_(), model[1].bias.copy_(torch.tensor([0.0, 9.0]))
    terms = ResponseKD(1.0, 0.0).terms(model, batch, Context(teacher=teacher))
    assert terms["kd"].item() == pytest.approx(0.0, abs=1e-6)
