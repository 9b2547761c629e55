"""FitNets end to end on tiny CIFAR-format files (the `paper` profile's code path), and its bookkeeping."""

from dataclasses import replace

import pandas as pd
import pytest
from tiny_profiles import use_tiny_cifar_profile

from kdrepro.experiment import Experiment
from kdrepro.experiments import fitnets
from kdrepro.experiments.vision import PairRun, load
from kdrepro.models import plain_cnn


@pytest.fixture
def tiny_paper_profile(monkeypatch, data_dir, isolated):
    return use_tiny_cifar_profile(monkeypatch, data_dir, fitnets, epochs=2, hint_epochs=1)


def test_paper_profile_runs_every_arm_and_both_tables(tiny_paper_profile, isolated):
    exp = Experiment(fitnets, "paper")
    P = exp.protocol
    run = PairRun(exp, P.pair, load(P.pair))
    assert run.data.name == "cifar10" and run.data.input_shape == (3, 8, 8)
    arms = fitnets.FitNets(run, P, P.hints)
    for seed in P.seeds:
        for arm in fitnets.WHAT:
            arms.arm(arm, seed)
    for pair, hints in P.benchmark:
        pair_arms = fitnets.FitNets(PairRun(exp, pair, load(pair)), P, hints)
        for arm in ("teacher", "student", "kd", "fitnet_joint"):
            pair_arms.arm(arm, 0, main=False)
    runs = exp.runs
    assert runs["test_error"].between(0, 1).all()
    table = fitnets.results_table(runs, P.pair, {"teacher": 6, "student": 10}, run.data.name)
    assert [row["arm"] for row in table] == list(fitnets.WHAT)
    assert table[3]["paper (CIFAR-10, Table 5)"].startswith("89.01%")
    benchmark = fitnets.benchmark_table(runs, P.benchmark)
    assert len(benchmark) == 8 and {row["pair"] for row in benchmark} == {"resnet32x4-resnet8x4", "wrn_40_2-wrn_16_2"}
    folder = exp.save(table, exp.judge(fitnets.CLAIMS), {"size": fitnets.plot_size_and_error(runs)},
                      extra_tables={"CIFAR-100 benchmark": benchmark})
    assert len(pd.read_csv(folder / "table2.csv")) == 8
    assert "## CIFAR-100 benchmark" in (folder / "README.md").read_text()


def test_the_fitnet_gets_the_same_epochs_as_every_other_arm(tiny_paper_profile, monkeypatch):
    exp = Experiment(fitnets, "paper")
    P = exp.protocol
    run = PairRun(exp, P.pair, load(P.pair))
    stages_seen = []
    original = fitnets.fit_stages

    def spy(model, stages, *args, **kwargs):
        stages_seen.extend(stages)
        return original(model, stages, *args, **kwargs)

    monkeypatch.setattr(fitnets, "fit_stages", spy)
    fitnets.FitNets(run, P, P.hints).arm("fitnet", 0)
    assert [s.name for s in stages_seen] == ["hints", "kd"]
    assert sum(s.recipe.epochs for s in stages_seen) == P.pair.student_recipe.epochs
    assert stages_seen[0].objective.task is False     # stage 1: hints alone


def test_hint_epochs_that_leave_a_stage_empty_are_refused(tiny_paper_profile):
    exp = Experiment(fitnets, "paper")
    P = replace(exp.protocol, hint_epochs=exp.protocol.pair.student_recipe.epochs)
    arms = fitnets.FitNets(PairRun(exp, P.pair, load(P.pair)), P, P.hints)
    with pytest.raises(ValueError, match="must leave both stages at least one"):
        arms.arm("fitnet", 0)


def test_an_unknown_arm_lists_the_arms(tiny_paper_profile):
    exp = Experiment(fitnets, "paper")
    arms = fitnets.FitNets(PairRun(exp, exp.protocol.pair, load(exp.protocol.pair)), exp.protocol, exp.protocol.hints)
    with pytest.raises(ValueError, match="unknown arm 'hints'.*fitnet_joint"):
        arms.arm("hints", 0)


def test_layers_counts_convolutions_and_linear_layers():
    assert fitnets.layers(plain_cnn(((4, 4), (8,)))) == 4


def test_every_claim_names_arms_the_notebook_runs():
    assert all({c.better, c.worse} <= set(fitnets.WHAT) | {"teacher"} for c in fitnets.CLAIMS)


def test_kd_weights_keep_the_papers_ratio_of_label_and_soft_gradients():
    import torch
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
