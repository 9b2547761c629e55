"""The Hinton KD experiment end to end on tiny MNIST-format files: the `paper` profile's code path, offline."""

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch
from conftest import write_mnist_format
from tiny_profiles import use_paper_profile

from kdrepro.experiment import Experiment, resolve_profile
from kdrepro.experiments import hinton_kd
from kdrepro.measures import BiasCorrected
from kdrepro.report import build_summary


@pytest.fixture
def tiny_paper_profile(monkeypatch, data_dir, isolated):
    write_mnist_format(data_dir / "MNIST" / "raw", n_train=300, n_test=100)
    paper = hinton_kd.PROFILES["paper"]
    tiny = replace(paper, train_size=200, val_size=100, seeds=(0, 1), teacher_hidden=(32, 32), student_hidden=(16, 16),
                   small_hidden=(4, 4), teacher_recipe=replace(paper.teacher_recipe, epochs=2),
                   student_recipe=replace(paper.student_recipe, epochs=2), sweep_temperatures=(1.0, 3.0, 8.0, 20.0),
                   large_temperatures=(8.0, 20.0), small_fraction=0.1)
    return use_paper_profile(monkeypatch, hinton_kd, tiny)


def run_every_arm(exp: Experiment) -> hinton_kd.Data:
    p = exp.protocol
    data = hinton_kd.load(p)
    arms, measure = hinton_kd.arms(p), hinton_kd.measure(p)
    exp.run_arms([arm for name, arm in arms.items() if name != "kd_omit_bias"], data, measure)
    exp.run_arms([arms["kd_omit_bias"]], data, BiasCorrected(p.omitted_class))
    return data


def test_paper_profile_runs_every_arm_and_publishes_results(tiny_paper_profile, isolated):
    exp = Experiment(hinton_kd, "paper")
    data = run_every_arm(exp)
    assert data.name == "mnist" and data.input_shape == (1, 28, 28)
    runs = exp.runs
    assert set(runs.groupby("arm")["seed"].count()) == {2}
    assert runs["test_error"].between(0, 1).all()
    hard = runs[runs["arm"] == "scratch_omit"]
    assert (hard["omitted_error"] == 1.0).all()  # labels without the class can never teach it
    table = hinton_kd.results_table(runs, exp.protocol, "3")
    claims = [c for c in hinton_kd.CLAIMS if set(c.arms()) <= set(runs["arm"])]
    teacher = exp.train(hinton_kd.arms(exp.protocol)["teacher"], data)
    figures = {"temperature_sweep": hinton_kd.plot_temperature_sweep(runs, exp.protocol),
               "soft_targets": hinton_kd.plot_soft_targets(teacher, data, label=3)}
    folder = exp.save(table, exp.judge(claims), figures, notes=hinton_kd.DEPARTURES)
    assert folder == isolated / "results" / "paper" / "hinton_kd"
    assert {"README.md", "runs.csv", "table.csv", "claims.json", "provenance.json", "figures"} <= {
        p.name for p in folder.iterdir()}
    assert (folder / "figures" / "temperature_sweep.png").stat().st_size > 1000
    assert json.loads((folder / "provenance.json").read_text())["seeds"] == [0, 1]
    assert len(pd.read_csv(folder / "runs.csv")) == len(runs)
    summary = build_summary("paper").read_text()
    assert "claims reproduced" in summary and "hinton_kd/README.md" in summary


def test_a_second_run_is_served_from_the_cache(tiny_paper_profile, isolated):
    first = Experiment(hinton_kd, "paper")
    data = hinton_kd.load(first.protocol)
    kd = hinton_kd.arms(first.protocol)["kd"]
    a = first.run(kd, data, hinton_kd.measure(first.protocol))
    trained = sorted((isolated / "cache" / "models").iterdir())
    assert len(trained) == 2  # the teacher and the student
    second = Experiment(hinton_kd, "paper")
    b = second.run(kd, data, hinton_kd.measure(second.protocol))
    assert a == b and sorted((isolated / "cache" / "models").iterdir()) == trained


def test_arms_with_one_configuration_train_once(tiny_paper_profile, isolated):
    """The main KD arm and the sweep's point at the same temperature are one computation, whatever their names."""
    exp = Experiment(hinton_kd, "paper")
    data = hinton_kd.load(exp.protocol)
    arms = hinton_kd.arms(exp.protocol)
    assert arms["kd"].key() == arms["kd_T20"].key()
    assert exp.train(arms["kd"], data) is exp.train(arms["kd_T20"], data)


def test_the_random_teacher_control_is_kd_taught_by_the_teachers_network_at_its_initial_weights(tiny_paper_profile):
    exp = Experiment(hinton_kd, "paper")
    data = hinton_kd.load(exp.protocol)
    arms = hinton_kd.arms(exp.protocol)
    kd, control = arms["kd"], arms["kd_random"]
    random_teacher = control.teacher
    assert replace(control, name="kd", teacher=kd.teacher) == kd
    assert random_teacher.net == replace(kd.teacher.net, init="random teacher") and random_teacher.stages == ()
    untrained, fresh = exp.train(random_teacher, data), random_teacher.net.build(0, data)
    assert all(torch.equal(a, b) for a, b in zip(untrained.state_dict().values(), fresh.state_dict().values()))


def test_no_student_arm_clips_its_gradient_at_any_profile():
    """A clip binds harder at high T (the T^2-scaled soft loss): it would confound the temperature sweep."""
    for p in hinton_kd.PROFILES.values():
        assert p.student_recipe.clip_grad_norm is None
        assert {arm.recipe for name, arm in hinton_kd.arms(p).items() if name != "teacher"} == {p.student_recipe}


def test_profile_resolution_prefers_the_environment_and_rejects_unknown_names(monkeypatch):
    monkeypatch.setenv("KDREPRO_PROFILE", "smoke")
    assert resolve_profile(hinton_kd, "cpu") == "smoke"
    monkeypatch.setenv("KDREPRO_PROFILE", "huge")
    with pytest.raises(ValueError, match="unknown profile 'huge' for hinton_kd; choose one of smoke, cpu, paper"):
        resolve_profile(hinton_kd, "cpu")


def test_every_claim_names_arms_the_notebook_runs():
    arms = set(hinton_kd.arms(hinton_kd.PROFILES["cpu"]))
    assert set(hinton_kd.arm_descriptions(hinton_kd.PROFILES["cpu"], "Dress")) == arms
    assert all(set(claim.arms()) <= arms for claim in hinton_kd.CLAIMS)


def test_device_resolution(monkeypatch):
    import torch

    from kdrepro.experiment import resolve_device
    monkeypatch.delenv("KDREPRO_DEVICE", raising=False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("KDREPRO_DEVICE", "cpu")
    assert resolve_device("cuda") == torch.device("cpu")
    if not torch.cuda.is_available():
        monkeypatch.delenv("KDREPRO_DEVICE")
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            resolve_device("cuda")


def test_every_student_gets_the_same_steps_and_the_small_transfer_set_is_drawn_per_seed():
    p = hinton_kd.PROFILES["cpu"]
    arms = hinton_kd.arms(p)
    assert {arm.recipe for name, arm in arms.items() if name != "teacher"} == {p.student_recipe}
    assert all(arm.rows.same_steps for arm in arms.values())
    labels = torch.arange(5000) % 10
    first, second = (arms["soft_small"].rows.select(labels, seed) for seed in (0, 1))
    assert len(first) == len(second) == 150 and not torch.equal(first, second)
    assert torch.equal(first, arms["hard_small"].rows.select(labels, 0))  # paired: one draw per seed for both arms
