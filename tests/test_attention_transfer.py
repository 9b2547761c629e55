"""Attention transfer end to end on tiny CIFAR-format files (the `paper` profile's code path), its arms, and the
attention distance it reports."""

import copy
import math
from collections import OrderedDict
from dataclasses import replace

import pytest
import torch
from tiny_profiles import use_tiny_cifar_profile
from torch import nn

from kdrepro import measures
from kdrepro.data import Data, Split
from kdrepro.experiment import Experiment
from kdrepro.experiments import attention_transfer as at
from kdrepro.experiments import vision
from kdrepro.measures import AttentionDistance, attention_distance
from kdrepro.objectives.feature import AttentionTransfer, AttentionTransferKD
from kdrepro.objectives.response import ResponseKD


@pytest.fixture
def tiny_paper_profile(monkeypatch, data_dir, isolated):
    return use_tiny_cifar_profile(monkeypatch, data_dir, at)


def test_paper_profile_runs_every_arm_draws_the_maps_and_publishes(tiny_paper_profile, isolated):
    exp = Experiment(at, "paper")
    P = exp.protocol
    data = vision.load(P.pair).to(exp.device)
    arms = at.arms(P)
    at.run_pair(exp, list(arms.values()), P.layers, data)
    exp.protocol = replace(P, seeds=(0,))                   # the benchmark's large networks at one seed
    for pair, layers, pair_arms in at.benchmark_arms(P):
        at.run_pair(exp, pair_arms, layers, vision.load(pair).to(exp.device))
    runs = exp.runs
    students = runs[runs["arm"].isin(["student", "at", "kd", "at_kd"])]
    assert len(students) == 8 and students["attention_distance"].between(0, 2).all()   # unit vectors: at most 2 apart
    assert runs[runs["arm"] == "teacher"]["attention_distance"].isna().all()
    table = at.results_table(runs, P.pair)
    assert [row["arm"] for row in table] == list(at.WHAT)
    models = {name: exp.train(arms[name], data) for name in ("teacher", "student", "at")}
    maps = at.plot_attention_maps(models, P.layers, data, images=2)
    assert len(maps.axes) == 2 * (1 + 3 * len(P.layers))
    benchmark = at.benchmark_table(runs, P.benchmark)
    assert len(benchmark) == 8
    folder = exp.save(table, exp.judge(at.CLAIMS), {"attention_maps": maps},
                      extra_tables={"CIFAR-100 benchmark": benchmark})
    assert (folder / "figures" / "attention_maps.png").stat().st_size > 1000


def test_a_student_that_is_a_copy_of_its_teacher_has_attention_distance_zero(tiny_paper_profile):
    exp = Experiment(at, "paper")
    P = exp.protocol
    data = vision.load(P.pair).to(exp.device)
    teacher = exp.train(at.arms(P)["teacher"], data)
    measure = AttentionDistance((("block1", "block1"), ("block3", "block3")), at.arms(P)["teacher"])
    assert measure(copy.deepcopy(teacher), data, teacher)["attention_distance"] == pytest.approx(0.0, abs=1e-6)


class Flip(nn.Module):
    def forward(self, x):
        return x.flip(-1)


class Louder(nn.Module):
    def forward(self, x):
        return 3 * x


def test_the_attention_distance_is_the_per_image_l2_distance_of_normalised_maps():
    # one channel, 1x2 maps: the maps of [1, 0] and its mirror [0, 1] are orthogonal unit vectors, sqrt(2) apart
    x = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 2.0]]]])
    student, teacher = nn.Sequential(OrderedDict(f=nn.Identity())), nn.Sequential(OrderedDict(f=Flip()))
    assert attention_distance(student, teacher, x, (("f", "f"),)) == pytest.approx(math.sqrt(2))
    louder = nn.Sequential(OrderedDict(f=Louder()))            # normalised maps: blind to the activations' scale
    assert attention_distance(student, louder, x, (("f", "f"),)) == pytest.approx(0.0, abs=1e-7)


def test_the_attention_distance_averages_over_the_first_images_of_the_test_set_the_profile_names(monkeypatch):
    seen = []
    monkeypatch.setattr(measures, "Classification", lambda **settings: lambda model, data: {})
    monkeypatch.setattr(measures, "attention_distance", lambda model, teacher, x, layers: seen.append(x) or 0.5)
    test = Split(torch.arange(10.0)[:, None], torch.zeros(10, dtype=torch.long))
    data = Data("d", test, test, test, classes=("a",))
    for images, expected in ((3, [0.0, 1.0, 2.0]), (None, list(range(10)))):
        reading = AttentionDistance((("f", "f"),), at.arms(at.PROFILES["smoke"])["teacher"], images)(None, data, None)
        assert reading == {"attention_distance": 0.5} and seen.pop()[:, 0].tolist() == expected
    cpu = at.PROFILES["cpu"]
    assert {run.measure.images for run in at.runs(cpu) if isinstance(run.measure, AttentionDistance)} == {1000}


def test_the_arms_are_table_1s_columns_with_the_papers_weights():
    p = at.PROFILES["cpu"]
    arms = at.arms(p)
    assert list(arms) == ["teacher", "student", "at", "kd", "at_kd"]
    assert arms["at"].objective == AttentionTransfer(at.GROUPS, beta=1000.0, form="code")
    assert arms["kd"].objective == ResponseKD(4.0, 0.1)
    assert arms["at_kd"].objective == AttentionTransferKD(at.GROUPS, 4.0, 0.1, beta=1000.0, form="code")
    students = [arm for name, arm in arms.items() if name != "teacher"]
    assert all(arm.net == arms["student"].net and arm.recipe == p.pair.student_recipe for arm in students)


def test_every_claim_names_arms_the_notebook_runs():
    assert all({c.better, c.worse} <= set(at.WHAT) for c in at.CLAIMS)


def test_the_cpu_teacher_is_four_times_the_students_width_with_maps_of_the_same_size_at_every_group():
    from kdrepro.models import build
    from kdrepro.taps import forward_with_features

    pair = at.PROFILES["cpu"].pair
    x = torch.zeros(2, 1, 14, 14)
    names = [name for name, _ in at.GROUPS]
    _, teacher = forward_with_features(build(pair.teacher, 10, 1), x, names)
    _, student = forward_with_features(build(pair.student, 10, 1), x, names)
    assert [teacher[n].shape[1] for n in names] == [16, 32, 64] and [student[n].shape[1] for n in names] == [4, 8, 16]
    assert all(teacher[n].shape[2:] == student[n].shape[2:] for n in names)
