"""Feature-based objectives (kdrepro.objectives.feature): each term checked against the loss functions by hand."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdrepro.data import Batch, Split
from kdrepro.losses.feature import attention_transfer_loss, hint_loss
from kdrepro.losses.response import kd_loss
from kdrepro.models import plain_cnn, wide_resnet
from kdrepro.objectives import Context
from kdrepro.objectives.feature import AttentionTransfer, AttentionTransferKD, Hints, HintsWithLabels
from kdrepro import schemes
from kdrepro.schemes import Teacher
from kdrepro.seeds import seeded
from kdrepro.taps import forward_with_features
from kdrepro.train import Recipe, fit

GROUPS = (("block1", "block1"), ("block3", "block3"))


def batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, 1, 12, 12, generator=g), torch.randint(0, 10, (n,), generator=g), torch.arange(n))


def context(objective, student, teacher, x):
    """What `fit` hands an objective: the frozen teacher and the modules the objective owns."""
    frozen = Teacher(teacher, x)
    return Context(teacher=frozen, modules=nn.ModuleDict(objective.modules(student, frozen, tuple(x.shape[1:]))))


def wide_pair():
    torch.manual_seed(0)
    teacher, student = wide_resnet(10, 2, in_channels=1, base=4), wide_resnet(10, 1, in_channels=1, base=4)
    return teacher.eval(), student.eval()


def groups(model, x):
    """The outputs of the first and last residual groups, computed by calling the network's parts in turn."""
    first = model.block1(model.conv1(x))
    return {"block1": first, "block3": model.block3(model.block2(first))}


def test_a_student_identical_to_its_teacher_pays_only_the_task_loss():
    teacher, _ = wide_pair()
    student, b = copy.deepcopy(teacher), batch()
    objective = AttentionTransfer((("block1", "block1"), ("block2", "block2")), beta=1000.0)
    terms = objective.terms(student, b, context(objective, student, teacher, b.x))
    torch.testing.assert_close(terms["ce"], F.cross_entropy(student(b.x), b.y))
    assert terms["at"].item() == pytest.approx(0.0, abs=1e-6)


def test_attention_transfer_is_cross_entropy_plus_beta_half_the_sum_over_layer_pairs():
    teacher, student = wide_pair()
    b, objective = batch(), AttentionTransfer(GROUPS, beta=1000.0, p=2.0, form="code")
    terms = objective.terms(student, b, context(objective, student, teacher, b.x))
    s, t = groups(student, b.x), groups(teacher, b.x)
    assert list(terms) == ["ce", "at"]
    torch.testing.assert_close(terms["ce"], F.cross_entropy(student(b.x), b.y))
    torch.testing.assert_close(terms["at"], 500.0 * (attention_transfer_loss(s["block1"], t["block1"])
                                                    + attention_transfer_loss(s["block3"], t["block3"])))


def test_attention_transfer_with_kd_adds_hintons_two_weighted_terms():
    teacher, student = wide_pair()
    b, objective = batch(), AttentionTransferKD(GROUPS, temperature=4.0, hard_weight=0.1, beta=1000.0, form="paper")
    terms = objective.terms(student, b, context(objective, student, teacher, b.x))
    s, t = groups(student, b.x), groups(teacher, b.x)
    assert set(terms) == {"ce", "kd", "at"}
    torch.testing.assert_close(terms["ce"], 0.1 * F.cross_entropy(student(b.x), b.y))
    torch.testing.assert_close(terms["kd"], 0.9 * kd_loss(student(b.x), teacher(b.x), 4.0))
    torch.testing.assert_close(terms["at"], 500.0 * sum(attention_transfer_loss(s[k], t[k], form="paper")
                                                        for k in ("block1", "block3")))


def test_layers_whose_maps_differ_in_size_are_named_in_the_error():
    teacher, student = wide_pair()
    b, objective = batch(), AttentionTransfer((("block1", "block2"),), beta=1.0)
    with pytest.raises(ValueError, match="student layer 'block1' and teacher layer 'block2'.*same spatial"):
        objective.terms(student, b, context(objective, student, teacher, b.x))


def test_impossible_weights_are_refused_when_the_objective_is_declared():
    with pytest.raises(ValueError, match="beta must be non-negative and finite, got -1.0"):
        AttentionTransfer(GROUPS, beta=-1.0)
    with pytest.raises(ValueError, match="beta must be non-negative and finite, got nan"):
        AttentionTransferKD(GROUPS, temperature=4.0, hard_weight=0.1, beta=float("nan"))
    with pytest.raises(ValueError, match="hard_weight"):
        AttentionTransferKD(GROUPS, temperature=4.0, hard_weight=2.0, beta=1.0)
    with pytest.raises(ValueError, match="weight must be non-negative and finite, got inf"):
        HintsWithLabels("relu4", "relu2", weight=float("inf"))


def test_a_feature_objective_without_a_teacher_says_so():
    student = plain_cnn(((4,),), in_channels=1)
    with pytest.raises(ValueError, match="Hints distils from a teacher, but the run has none"):
        Hints("relu1", "relu1").modules(student, None, (1, 12, 12))


def thin_and_wide():
    torch.manual_seed(0)
    teacher = plain_cnn(((8,), (16,)), in_channels=1).eval()    # relu2: (16, 6, 6)
    student = plain_cnn(((4, 4), (4, 4, 4)), in_channels=1)      # relu4: (4, 6, 6), relu2: (4, 12, 12)
    return teacher, student


def test_teacher_features_are_computed_once_over_the_split_and_read_at_the_batchs_rows(monkeypatch):
    teacher, _ = thin_and_wide()
    x = torch.randn(10, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    rows = torch.tensor([1, 4, 6, 9])                  # the student's split: rows 1, 4, 6, 9 of the full one
    b = Batch(x[rows][[3, 0]], torch.zeros(2, dtype=torch.long), torch.tensor([3, 0]))   # full rows 9 and 1
    expected_logits, expected = forward_with_features(teacher.eval(), x[[9, 1]], ["relu2"])
    passes, split_features = [], schemes.split_features
    monkeypatch.setattr(schemes, "split_features", lambda *args: passes.append(args) or split_features(*args))
    frozen = Teacher(teacher, x, rows)
    for _ in range(2):
        logits, features = frozen.features(b, ["relu2"])
        torch.testing.assert_close(logits, expected_logits)
        torch.testing.assert_close(features["relu2"], expected["relu2"])
    assert len(passes) == 1 and len(passes[0][1]) == 10           # one pass, over all ten rows
    monkeypatch.setattr(schemes, "FEATURES_KEPT_BYTES", 10 * 16 * 6 * 6 * 4 - 1)   # relu2: 16 x 6 x 6 floats a row
    for too_large_or_augmented in (Teacher(teacher, x, rows), Teacher(teacher, x, rows, augmented=True)):
        torch.testing.assert_close(too_large_or_augmented.features(b, ["relu2"])[1]["relu2"], expected["relu2"])
    assert len(passes) == 1                                        # both computed for the batch alone


def test_the_hint_regressor_makes_the_guided_map_the_hints_shape():
    teacher, student = thin_and_wide()
    frozen = Teacher(teacher, batch().x)
    paper = Hints("relu2", "relu2").modules(student, frozen, (1, 12, 12))["regressor"]
    assert paper.conv.kernel_size == (7, 7) and paper.conv.out_channels == 16      # 12 - 7 + 1 = 6
    one_by_one = HintsWithLabels("relu4", "relu2", weight=100.0).modules(student, frozen, (1, 12, 12))["regressor"]
    assert one_by_one.conv.kernel_size == (1, 1) and isinstance(one_by_one.norm, nn.BatchNorm2d)


def test_the_hint_term_is_the_hint_loss_of_the_regressed_guided_layer():
    teacher, student = thin_and_wide()
    b, objective = batch(), Hints("relu4", "relu2", reduction="paper")
    ctx = context(objective, student, teacher, b.x)
    terms = objective.terms(student, b, ctx)
    guided = student[:9](b.x)                      # conv1 .. relu4, pool1 after relu2
    hint = teacher[:5](b.x)                        # conv1, relu1, pool1, conv2, relu2
    assert list(terms) == ["hint"]
    torch.testing.assert_close(terms["hint"], hint_loss(ctx.modules["regressor"](guided), hint, "paper"))


def test_hints_with_labels_adds_cross_entropy_to_the_weighted_hint_term():
    teacher, student = thin_and_wide()
    b, objective = batch(), HintsWithLabels("relu4", "relu2", weight=100.0, reduction="mean")
    ctx = context(objective, student, teacher, b.x)
    terms = objective.terms(student, b, ctx)
    regressed = ctx.modules["regressor"](student[:9](b.x))
    torch.testing.assert_close(terms["ce"], F.cross_entropy(student(b.x), b.y))
    torch.testing.assert_close(terms["hint"], 100.0 * (regressed - teacher[:5](b.x)).pow(2).mean())


def test_the_hint_stage_trains_only_the_layers_up_to_the_guided_one_and_the_regressor():
    teacher, student = thin_and_wide()
    owned = {}

    class KeepsItsRegressor(Hints):
        def modules(self, model, frozen, input_shape):
            owned.update(super().modules(model, frozen, input_shape))
            owned["initial"] = copy.deepcopy(owned["regressor"].state_dict())
            return {"regressor": owned["regressor"]}

    train = Split(batch(32).x, batch(32).y)
    before = copy.deepcopy(student.state_dict())
    history = fit(student, KeepsItsRegressor("relu4", "relu2"), train, Recipe(epochs=2, batch_size=8, lr=0.01),
                  seed=0, teacher=Teacher(teacher, train.x), progress_seconds=None)
    changed = {k for k, v in student.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {f"conv{i}.{p}" for i in (1, 2, 3, 4) for p in ("weight", "bias")}
    assert any(not torch.equal(v, owned["initial"][k]) for k, v in owned["regressor"].state_dict().items())
    assert list(history.terms) == ["hint"] and history.loss[-1] < history.loss[0]


def test_the_regressor_starts_from_its_own_stream_of_the_runs_seed():
    teacher, student = thin_and_wide()
    train, owned = Split(batch(8).x, batch(8).y), []

    class KeepsItsRegressor(Hints):
        def modules(self, model, frozen, input_shape):
            built = super().modules(model, frozen, input_shape)
            owned.append(copy.deepcopy(built["regressor"].state_dict()))
            return built

    objective = KeepsItsRegressor("relu4", "relu2")
    with seeded(7, "modules"):
        expected = objective.modules(student, Teacher(teacher, train.x), (1, 12, 12))["regressor"].state_dict()
    fit(student, objective, train, Recipe(epochs=1, batch_size=8, lr=0.01), seed=7,
        teacher=Teacher(teacher, train.x), progress_seconds=None)
    assert all(torch.equal(owned[-1][k], v) for k, v in expected.items())
