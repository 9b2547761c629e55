"""FitNets end to end on tiny CIFAR-format files (the `paper` profile's code path), its arms and its bookkeeping."""

from dataclasses import replace

import pandas as pd
import pytest
from tiny_profiles import use_tiny_cifar_profile

import torch

from kdrepro.arms import Stage
from kdrepro.claims import Precondition
from kdrepro.experiment import Experiment
from kdrepro.experiments import fitnets, vision
from kdrepro.models import plain_cnn
from kdrepro.objectives.feature import Hints, HintsWithLabels
from kdrepro.objectives.response import ResponseKD
from kdrepro.objectives.task import CrossEntropy
from kdrepro.taps import forward_with_features


@pytest.fixture
def tiny_paper_profile(monkeypatch, data_dir, isolated):
    return use_tiny_cifar_profile(monkeypatch, data_dir, fitnets, epochs=2, hint_epochs=1)


def test_paper_profile_runs_every_arm_and_both_tables(tiny_paper_profile, isolated):
    exp = Experiment(fitnets, "paper")
    P = exp.protocol
    data = vision.load(P.pair).to(exp.device)
    assert data.name == "cifar10" and data.input_shape == (3, 8, 8)
    exp.run_arms(list(fitnets.arms(P).values()), data, fitnets.MEASURE)
    for pair, arms in fitnets.benchmark_arms(P):
        pair_data = vision.load(pair).to(exp.device)
        for arm in arms:                                              # seed 0 only
            exp.run(arm, pair_data, fitnets.MEASURE)
    runs = exp.runs
    assert runs["test_error"].between(0, 1).all() and (runs["multiply_adds"] > 0).all()
    table = fitnets.results_table(runs, P.pair, {"teacher": 6, "student": 10}, data.name)
    assert [row["arm"] for row in table] == list(fitnets.WHAT)
    assert table[3]["paper (CIFAR-10, Table 5)"].startswith("89.01%")
    benchmark = fitnets.benchmark_table(runs, P.benchmark)
    assert len(benchmark) == 8 and {row["pair"] for row in benchmark} == {"resnet32x4-resnet8x4", "wrn_40_2-wrn_16_2"}
    folder = exp.save(table, exp.judge(fitnets.CLAIMS), {"size": fitnets.plot_size_and_error(runs)},
                      extra_tables={"CIFAR-100 benchmark": benchmark})
    assert len(pd.read_csv(folder / "table2.csv")) == 8
    assert "## CIFAR-100 benchmark" in (folder / "README.md").read_text()


def test_the_fitnet_is_hints_then_the_kd_arms_objective_in_the_epochs_of_every_other_arm():
    p = fitnets.PROFILES["cpu"]
    arms = fitnets.arms(p)
    hints, kd = arms["fitnet"].objective
    assert hints == Stage(Hints("relu12", "relu2", "relu", reduction="mean"), 3)
    assert kd == Stage(arms["kd"].objective, 7) and arms["kd"].objective == ResponseKD(3.0, p.hard_weight)
    assert hints.epochs + kd.epochs == arms["kd"].recipe.epochs == arms["student"].recipe.epochs == 10
    assert {arm.recipe for name, arm in arms.items() if name != "teacher"} == {p.pair.student_recipe}


def test_every_student_starts_from_the_same_weights_and_learns_from_the_teacher_but_the_scratch_one():
    arms = fitnets.arms(fitnets.PROFILES["cpu"])
    students = [arm for name, arm in arms.items() if name != "teacher"]
    assert all(arm.net == arms["student"].net for arm in students) and arms["teacher"].net.init == "teacher"
    assert arms["student"].teacher is None and arms["student"].objective == CrossEntropy()
    assert all(arm.teacher == arms["teacher"] for arm in students if arm.name != "student")


def test_the_one_stage_variant_weighs_the_mean_squared_hint_by_100_and_runs_only_where_the_protocol_asks():
    p = fitnets.PROFILES["cpu"]
    assert "fitnet_joint" not in fitnets.arms(p)
    arms = fitnets.arms(replace(p, joint_arm=True))
    assert arms["fitnet_joint"].objective == HintsWithLabels("relu12", "relu2", 100.0, "relu", reduction="mean")


def test_the_cpu_student_is_thin_and_deep_its_guided_layer_ends_its_middle_stage_at_the_hints_size():
    p = fitnets.PROFILES["cpu"]
    student = plain_cnn(p.pair.student["stages"], in_channels=1)
    teacher = plain_cnn(p.pair.teacher["stages"], in_channels=1, batch_norm=True)
    assert fitnets.layers(student) == 19 and fitnets.layers(teacher) == 4
    x = torch.zeros(2, 1, 14, 14)
    _, student_maps = forward_with_features(student, x, [p.hints.guided])
    _, teacher_maps = forward_with_features(teacher, x, [p.hints.hint])
    assert student_maps[p.hints.guided].shape == (2, 8, 7, 7) and teacher_maps[p.hints.hint].shape == (2, 64, 7, 7)


def test_every_student_arm_clips_its_gradient_alike_and_the_scratch_student_must_trail_by_a_fifth():
    p = fitnets.PROFILES["cpu"]
    assert {arm.recipe.clip_grad_norm for name, arm in fitnets.arms(p).items() if name != "teacher"} == {5.0}
    beats_scratch, beats_kd = fitnets.CLAIMS[:2]
    assert beats_scratch.preconditions == beats_kd.preconditions == (Precondition("teacher", "student", 0.2),)


def test_the_benchmark_names_each_arm_after_its_pair_and_distils_at_t4():
    [(pair, arms), _] = fitnets.benchmark_arms(fitnets.PROFILES["paper"])
    assert [arm.name for arm in arms] == [f"{pair.name} {arm}" for arm in ("teacher", "student", "kd", "fitnet_joint")]
    assert arms[2].objective == ResponseKD(4.0, 0.1) and arms[2].teacher == arms[0]


def test_hint_epochs_that_leave_a_stage_empty_are_refused():
    p = fitnets.PROFILES["cpu"]
    with pytest.raises(ValueError, match="hint_epochs=10 must leave both stages at least one of the 10 epochs"):
        fitnets.arms(replace(p, hint_epochs=p.pair.student_recipe.epochs))


def test_layers_counts_convolutions_and_linear_layers():
    assert fitnets.layers(plain_cnn(((4, 4), (8,)))) == 4


def test_every_claim_names_arms_the_notebook_runs():
    assert all({c.better, c.worse} <= set(fitnets.WHAT) for c in fitnets.CLAIMS)


def test_kd_weights_keep_the_papers_ratio_of_label_and_soft_gradients():
    import torch.nn.functional as F

    from kdrepro.losses.response import hinton_loss

    p = fitnets.PROFILES["cpu"]
    tau, lam = p.temperature, p.soft_weight
    assert p.hard_weight == pytest.approx(1 / (1 + 2.5 / 9))
    torch.manual_seed(0)
    student = torch.randn(5, 10, requires_grad=True)
    teacher, labels = torch.randn(5, 10) * 3, torch.randint(0, 10, (5,))
    # the paper: H(y, P_S) + lambda * H(P_T^tau, P_S^tau), the soft term a cross-entropy without tau^2
    soft_ce = -(F.softmax(teacher / tau, 1) * F.log_softmax(student / tau, 1)).sum(1).mean()
    paper_grad, = torch.autograd.grad(F.cross_entropy(student, labels) + lam * soft_ce, student)
    ours_grad, = torch.autograd.grad(hinton_loss(student, teacher, labels, tau, p.hard_weight), student)
    torch.testing.assert_close(paper_grad, (1 + lam / tau**2) * ours_grad)
