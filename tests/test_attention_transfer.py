"""Attention transfer end to end on tiny CIFAR-format files (the `paper` profile's code path)."""

import copy

import pytest
from tiny_profiles import use_tiny_cifar_profile

from kdrepro.experiment import Experiment
from kdrepro.experiments import attention_transfer as at
from kdrepro.experiments.vision import PairRun, load


@pytest.fixture
def tiny_paper_profile(monkeypatch, data_dir, isolated):
    return use_tiny_cifar_profile(monkeypatch, data_dir, at)


def test_paper_profile_runs_every_arm_draws_the_maps_and_publishes(tiny_paper_profile, isolated):
    exp = Experiment(at, "paper")
    P = exp.protocol
    run = PairRun(exp, P.pair, load(P.pair))
    arms = at.AttentionTransfer(run, P, P.layers)
    for seed in P.seeds:
        for arm in at.WHAT:
            arms.arm(arm, seed)
    for pair, layers in P.benchmark:
        pair_arms = at.AttentionTransfer(PairRun(exp, pair, load(pair)), P, layers)
        for arm in ("teacher", "student", "kd", "at"):
            pair_arms.arm(arm, 0, main=False)
    runs = exp.runs
    students = runs[runs["arm"].isin(["student", "at", "kd", "at_kd"])]
    assert students["attention_distance"].between(0, 2).all()   # unit vectors are at most 2 apart
    table = at.results_table(runs, P.pair)
    assert [row["arm"] for row in table] == list(at.WHAT)
    maps = at.plot_attention_maps({name: arms.model(name, 0) for name in ("teacher", "student", "at")}, P.layers,
                                  run.data, images=2)
    assert len(maps.axes) == 2 * (1 + 3 * len(P.layers))
    benchmark = at.benchmark_table(runs, P.benchmark)
    assert len(benchmark) == 8
    folder = exp.save(table, exp.judge(at.CLAIMS), {"attention_maps": maps},
                      extra_tables={"CIFAR-100 benchmark": benchmark})
    assert (folder / "figures" / "attention_maps.png").stat().st_size > 1000


def test_a_student_that_is_a_copy_of_its_teacher_has_attention_distance_zero(tiny_paper_profile):
    exp = Experiment(at, "paper")
    P = exp.protocol
    arms = at.AttentionTransfer(PairRun(exp, P.pair, load(P.pair)), P, (("block1", "block1"), ("block3", "block3")))
    twin = copy.deepcopy(arms.model("teacher", 0))
    assert arms.attention_distance(twin, 0)["attention_distance"] == pytest.approx(0.0, abs=1e-6)


def test_an_unknown_arm_lists_the_arms():
    with pytest.raises(ValueError, match="unknown arm 'fsp'.*at_kd"):
        at.AttentionTransfer(None, at.PROFILES["cpu"], at.GROUPS)._method("fsp", 0)


def test_every_claim_names_arms_the_notebook_runs():
    assert all({c.better, c.worse} <= set(at.WHAT) for c in at.CLAIMS)
