import copy

import pytest
import torch
import torch.nn.functional as F

from kdrepro.data import Batch, Split
from kdrepro.losses.feature import HintRegressor, attention_transfer_loss, hint_loss
from kdrepro.losses.response import hinton_loss
from kdrepro.models import plain_cnn, wide_resnet
from kdrepro.schemes import FeatureDistillation
from kdrepro.train import Objective, Recipe, Stage, fit, fit_stages


def batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, 1, 12, 12, generator=g), torch.randint(0, 10, (n,), generator=g), torch.arange(n))


def test_a_student_identical_to_its_teacher_pays_only_the_task_loss():
    torch.manual_seed(0)
    teacher = wide_resnet(10, 1, in_channels=1, base=4)
    student = copy.deepcopy(teacher).eval()
    b = batch()
    objective = FeatureDistillation(teacher, [("block1", "block1"), ("block2", "block2")], attention_transfer_loss,
                                    weight=500.0)
    torch.testing.assert_close(objective.loss(student, b), F.cross_entropy(student(b.x), b.y))


def test_the_loss_is_the_task_plus_the_weighted_sum_over_layer_pairs():
    torch.manual_seed(0)
    teacher, student = wide_resnet(10, 2, in_channels=1, base=4), wide_resnet(10, 1, in_channels=1, base=4)
    teacher.eval(), student.eval()
    b, pairs = batch(), [("block1", "block1"), ("block3", "block3")]
    objective = FeatureDistillation(teacher, pairs, attention_transfer_loss, weight=500.0, temperature=4.0,
                                    hard_weight=0.1)
    student_out, teacher_out = {}, {}
    for model, out in ((student, student_out), (teacher, teacher_out)):
        x = model.conv1(b.x)
        out["block1"] = model.block1(x)
        out["block3"] = model.block3(model.block2(out["block1"]))
    expected = 500.0 * sum(attention_transfer_loss(student_out[s], teacher_out[t]) for s, t in pairs)
    expected = expected + hinton_loss(student(b.x), teacher(b.x), b.y, 4.0, 0.1)
    torch.testing.assert_close(objective.loss(student, b), expected)


def test_layers_whose_maps_differ_in_size_are_named_in_the_error():
    torch.manual_seed(0)
    teacher, student = wide_resnet(10, 2, in_channels=1, base=4), wide_resnet(10, 1, in_channels=1, base=4)
    objective = FeatureDistillation(teacher, [("block1", "block2")], attention_transfer_loss, weight=1.0)
    with pytest.raises(ValueError, match="student layer 'block1' and teacher layer 'block2'.*same spatial"):
        objective.loss(student, batch())


def test_impossible_weights_are_refused_before_training():
    teacher = wide_resnet(10, 1, in_channels=1, base=4)
    with pytest.raises(ValueError, match="non-negative"):
        FeatureDistillation(teacher, [], attention_transfer_loss, weight=-1.0)
    with pytest.raises(ValueError, match="hard_weight"):
        FeatureDistillation(teacher, [], attention_transfer_loss, weight=1.0, temperature=4.0, hard_weight=2.0)


def test_the_hint_stage_trains_only_the_layers_up_to_the_guided_one_and_the_regressor():
    torch.manual_seed(0)
    teacher = plain_cnn(((8,), (16,)), in_channels=1)
    student = plain_cnn(((4, 4), (4, 4, 4)), in_channels=1)
    regressor = HintRegressor((4, 6, 6), (16, 6, 6))       # guided relu4 (second stage), hint relu2
    hints = FeatureDistillation(teacher, [("relu4", "relu2")], hint_loss, weight=1.0,
                                adapters={"relu4": regressor}, task=False)
    before = copy.deepcopy(student.state_dict())
    regressor_before = copy.deepcopy(regressor.state_dict())
    train = Split(batch(32).x, batch(32).y)
    histories = fit_stages(student, [Stage("hints", hints, Recipe(epochs=2, batch_size=8, lr=0.01))], train,
                           seed=0, progress_seconds=None)
    changed = {k for k, v in student.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {f"conv{i}.{p}" for i in (1, 2, 3, 4) for p in ("weight", "bias")}
    assert any(not torch.equal(v, regressor_before[k]) for k, v in regressor.state_dict().items())
    assert len(histories) == 1 and histories[0].loss[-1] < histories[0].loss[0]


def test_stages_run_in_order_each_from_the_weights_the_last_one_left():
    torch.manual_seed(0)
    model = plain_cnn(((4,),), in_channels=1)
    seen = []

    class Probe(Objective):  # records the weights each stage starts from
        def __init__(self, name):
            self.name = name

        def loss(self, m, b):
            if not any(name == self.name for name, _ in seen):
                seen.append((self.name, m.conv1.weight.detach().clone()))
            return F.cross_entropy(m(b.x), b.y)

    train = Split(batch(16).x, batch(16).y)
    recipe = Recipe(epochs=1, batch_size=8, lr=0.1)
    stage_one_alone = copy.deepcopy(model)
    fit(stage_one_alone, Probe("alone"), train, recipe, seed=0, progress_seconds=None)
    fit_stages(model, [Stage("one", Probe("one"), recipe), Stage("two", Probe("two"), recipe)], train, seed=0,
               progress_seconds=None)
    assert [name for name, _ in seen] == ["alone", "one", "two"]
    torch.testing.assert_close(seen[2][1], stage_one_alone.conv1.weight)  # two starts where one ended
