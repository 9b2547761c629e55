"""FSP: the objective, and the experiment end to end on tiny CIFAR-10 files (the `paper` profile's code path)."""

import copy
import json
from dataclasses import replace

import pytest
import torch
from conftest import write_cifar
from tiny_profiles import use_paper_profile

from kdrepro.data import Batch
from kdrepro.experiment import Experiment
from kdrepro.experiments import fsp
from kdrepro.losses.relation import fsp_loss, fsp_matrix
from kdrepro.models import ResNet
from kdrepro.relation_distillation import FSPDistillation
from kdrepro.train import Recipe

PAIRS = [("stem", "layer1"), ("layer1", "layer2"), ("layer2", "layer3")]


def batch(n=4):
    g = torch.Generator().manual_seed(0)
    return Batch(torch.randn(n, 1, 12, 12, generator=g), torch.randint(0, 10, (n,), generator=g), torch.arange(n))


def test_a_student_identical_to_its_teacher_has_no_fsp_loss():
    torch.manual_seed(0)
    teacher = ResNet(14, (4, 4, 8, 8), in_channels=1)
    student = copy.deepcopy(teacher).eval()
    assert FSPDistillation(teacher, PAIRS).loss(student, batch()).item() == pytest.approx(0.0, abs=1e-7)


def test_the_loss_is_the_weighted_sum_over_stages_of_the_matrices_distance():
    torch.manual_seed(0)
    teacher, student = ResNet(14, (4, 4, 8, 8), in_channels=1).eval(), ResNet(8, (4, 4, 8, 8), in_channels=1).eval()
    b = batch()
    features = {}
    for name, model in (("s", student), ("t", teacher)):
        stem = model.stem(b.x)
        layer1 = model.layer1(stem)
        layer2 = model.layer2(layer1)
        layer3 = model.layer3(layer2)
        features[name] = [fsp_matrix(stem, layer1), fsp_matrix(layer1, layer2), fsp_matrix(layer2, layer3)]
    weights = [1.0, 0.5, 2.0]
    expected = sum(w * fsp_loss(s, t) for w, s, t in zip(weights, features["s"], features["t"]))
    torch.testing.assert_close(FSPDistillation(teacher, PAIRS, weights).loss(student, b), expected)


def test_channel_counts_that_differ_name_the_layers():
    teacher, student = ResNet(8, (4, 4, 8, 8), in_channels=1), ResNet(8, (4, 4, 8, 16), in_channels=1)
    with pytest.raises(ValueError, match="layers 'layer2' -> 'layer3'.*\\(8, 16\\).*\\(8, 8\\)"):
        FSPDistillation(teacher, PAIRS).loss(student, batch())
    with pytest.raises(ValueError, match="one non-negative weight per layer pair"):
        FSPDistillation(teacher, PAIRS, [1.0])


def test_the_short_schedule_is_a_third_of_the_epochs_with_milestones_scaled():
    short = fsp.shortened(fsp.PAPER_RECIPE, 1 / 3)
    assert (short.epochs, short.milestones) == (55, (27, 41))   # 164 / 3, 82 / 3, 123 / 3, rounded
    assert fsp.shortened(Recipe(epochs=9), 1 / 3).epochs == 3


def test_every_claim_names_arms_the_notebook_runs():
    arms = set(fsp.arm_descriptions(fsp.PROFILES["cpu"]))
    assert all({c.better, c.worse} <= arms for c in fsp.CLAIMS)


@pytest.fixture
def tiny_paper_profile(monkeypatch, data_dir, isolated):
    write_cifar(data_dir / "cifar-10-batches-py", classes=10, n_per_batch=24)
    paper = fsp.PROFILES["paper"]
    short = Recipe(epochs=3, lr=0.05, schedule="step", milestones=(2,), crop_padding=4, flip=True)
    tiny = replace(paper, train_size=80, val_size=40, seeds=(0, 1),
                   teacher={"family": "resnet", "depth": 14, "channels": (4, 4, 8, 8)},
                   student={"family": "resnet", "depth": 8, "channels": (4, 4, 8, 8)}, teacher_recipe=short,
                   init_recipe=replace(short, epochs=1, milestones=()), student_recipe=short)
    return use_paper_profile(monkeypatch, fsp, tiny)


def test_paper_profile_runs_every_arm_and_publishes_results(tiny_paper_profile, isolated):
    exp = Experiment(fsp, "paper", "cpu")
    run = fsp.FSP(exp, fsp.load(exp.protocol))
    assert run.data.name == "cifar10" and run.data.input_shape == (3, 32, 32)
    for seed in exp.protocol.seeds:
        run.teacher_arm(seed)
        run.student_arm("student", "scratch", seed)
        run.student_arm("student_third", "scratch", seed, short=True)
        run.student_arm("fsp", "fsp", seed)
        run.student_arm("fsp_third", "fsp", seed, short=True)
        run.student_arm("fitnets", "fitnets", seed)
    runs = exp.runs
    assert set(runs.groupby("arm")["seed"].count()) == {2}
    assert runs["test_accuracy"].between(0, 1).all()
    assert [len(c) for c in runs[runs["arm"] == "fsp_third"]["val_curve"]] == [1, 1]
    assert [len(c) for c in runs[runs["arm"] == "fsp"]["val_curve"]] == [3, 3]
    # both FSP arms start from one cached stage-1 model: it was trained once per seed
    assert len(list((isolated / "cache" / "models").glob("fsp-init-*.pt"))) == 2
    figures = {"curves": fsp.plot_curves(runs),
               "fsp_matrices": fsp.plot_fsp_matrices({"teacher": run.teacher(0), "student": run.initialised("fsp", 0)},
                                                     run.data.test.x[:16], exp.protocol.pairs)}
    folder = exp.save(fsp.results_table(runs, exp.protocol), exp.judge(fsp.CLAIMS), figures, notes=fsp.DEPARTURES)
    assert folder == isolated / "results" / "paper" / "fsp"
    claims = json.loads((folder / "claims.json").read_text())
    assert len(claims) == len(fsp.CLAIMS) and all(c["seeds"] == 2 for c in claims)
    assert (folder / "figures" / "curves.png").stat().st_size > 1000


def test_a_test_size_evaluates_on_a_fixed_slice_of_the_test_set(tiny_paper_profile, isolated, monkeypatch):
    monkeypatch.setitem(fsp.PROFILES, "paper", replace(tiny_paper_profile, test_size=7))
    exp = Experiment(fsp, "paper", "cpu")
    data = fsp.load(exp.protocol)
    run = fsp.FSP(exp, data)
    assert torch.equal(run.data.test.y, data.test.y[:7]) and len(run.data.train) == len(data.train)
