"""FSP: the arms, and the experiment end to end on tiny CIFAR-10 files (the `paper` profile's code path). The
objective is tested with the other relation-based ones (tests/test_relation_objectives.py)."""

import json
from dataclasses import replace

import pytest
import torch
from conftest import write_cifar
from tiny_profiles import use_paper_profile

from kdrepro.arms import Net
from kdrepro.experiment import Experiment
from kdrepro.experiments import fsp
from kdrepro.objectives.feature import Hints
from kdrepro.objectives.relation import FSP
from kdrepro.objectives.task import CrossEntropy
from kdrepro.train import Recipe


def test_the_short_schedule_is_a_third_of_the_epochs_with_milestones_scaled():
    short = fsp.shortened(fsp.PAPER_RECIPE, 1 / 3)
    assert (short.epochs, short.milestones) == (55, (27, 41))   # 164 / 3, 82 / 3, 123 / 3, rounded
    assert fsp.shortened(Recipe(epochs=9), 1 / 3).epochs == 3


def test_every_claim_names_arms_the_notebook_runs():
    arms = fsp.arms(fsp.PROFILES["cpu"])
    assert set(fsp.arm_descriptions(fsp.PROFILES["cpu"])) <= set(arms)
    assert all({c.better, c.worse} <= set(arms) for c in fsp.CLAIMS)


def test_the_small_students_share_their_start_and_count_stage_one_in_the_scratch_students_budget():
    p = fsp.PROFILES["cpu"]
    arms = fsp.arms(p)
    full = replace(p.student_recipe, validation_curve=True)
    assert all(arms[name].net == Net(p.student, "student") for name in ("student", "fsp", "fitnets", "fsp_stage1"))
    assert arms["teacher"].net == Net(p.teacher, "teacher") and not arms["teacher"].recipe.validation_curve
    assert (arms["student"].recipe, arms["student"].objective) == (full, CrossEntropy())
    for name, first in (("fsp", FSP(p.pairs)), ("fitnets", Hints(*p.hint))):
        stage1, stage2 = arms[name].stages
        assert (stage1.objective, stage1.epochs, stage1.recipe) == (first, 2, p.init_recipe)
        assert (stage2.objective, stage2.epochs, stage2.recipe) == (CrossEntropy(), 7, None)
        assert arms[name].recipe == full and arms[name].teacher == arms["teacher"]
    # 2 epochs of stage 1 and 7 of stage 2, batches of 64 both: the scratch student's 9 epochs of updates
    assert p.init_recipe.batch_size == p.student_recipe.batch_size == 64 and full.epochs == 9
    assert (arms["fsp_stage1"].objective, arms["fsp_stage1"].recipe) == (FSP(p.pairs), p.init_recipe)


def test_the_fast_arms_have_the_teachers_architecture_and_a_third_of_its_iterations_stage_one_counted():
    p = fsp.PROFILES["cpu"]
    arms = fsp.arms(p)
    third = replace(p.teacher_recipe, epochs=3, validation_curve=True)   # 9 / 3
    assert arms["student_third"] == replace(arms["student_third"], net=Net(p.teacher, "student"), recipe=third,
                                            objective=CrossEntropy())
    stage1, stage2 = arms["fsp_third"].stages
    assert arms["fsp_third"].net == Net(p.teacher, "student") and arms["fsp_third"].recipe == third
    assert (stage1.objective, stage1.epochs, stage1.recipe) == (FSP(p.pairs), 1, replace(p.init_recipe, epochs=1))
    assert (stage2.objective, stage2.epochs) == (CrossEntropy(), 2)


def test_a_stage_one_that_leaves_stage_two_no_epoch_is_refused():
    p = fsp.PROFILES["cpu"]
    with pytest.raises(ValueError, match="arm 'fsp': stage 1's 9 epochs must leave stage 2 at least one of the "
                                         "budget's 9"):
        fsp.arms(replace(p, init_recipe=replace(p.init_recipe, epochs=9)))


@pytest.fixture
def tiny_paper_profile(monkeypatch, data_dir, isolated):
    write_cifar(data_dir / "cifar-10-batches-py", classes=10, n_per_batch=24)
    paper = fsp.PROFILES["paper"]
    short = Recipe(epochs=3, lr=0.05, schedule="step", milestones=(2,), crop_padding=4, flip=True)
    tiny = replace(paper, train_size=80, val_size=40, seeds=(0, 1),
                   teacher={"family": "resnet", "depth": 14, "channels": (4, 4, 8, 8)},
                   student={"family": "resnet", "depth": 8, "channels": (4, 4, 8, 8)},
                   teacher_recipe=replace(short, epochs=6, milestones=(4,)),
                   init_recipe=replace(short, epochs=1, milestones=()), student_recipe=short)
    return use_paper_profile(monkeypatch, fsp, tiny)


STUDENTS = ("student", "fsp", "fitnets", "student_third", "fsp_third")


def test_paper_profile_runs_every_arm_and_publishes_results(tiny_paper_profile, isolated):
    exp = Experiment(fsp, "paper", "cpu")
    p = exp.protocol
    data = fsp.load(p)
    arms, measure = fsp.arms(p), fsp.measure(p)
    assert data.name == "cifar10" and data.input_shape == (3, 32, 32)
    exp.run_arms([arms["teacher"]], data, measure)
    fsp.run_with_curves(exp, [arms[name] for name in STUDENTS], data, measure)
    runs = exp.runs
    assert set(runs.groupby("arm")["seed"].count()) == {2}
    assert runs["test_error"].between(0, 1).all() and runs["val_error"].between(0, 1).all()
    assert [len(c) for c in runs[runs["arm"] == "fsp_third"]["val_curve"]] == [1, 1]
    assert [len(c) for c in runs[runs["arm"] == "fsp"]["val_curve"]] == [2, 2]   # 3 epochs, 1 of them stage 1
    # stage 1 alone is the FSP arm's stage 1: the same loss at every epoch
    first_stages = [exp.histories(arms[name].at(0), data)[0].loss for name in ("fsp", "fsp_stage1")]
    assert first_stages[0] == first_stages[1]
    figures = {"curves": fsp.plot_curves(runs, fsp.steps_per_epoch(p, data)),
               "fsp_matrices": fsp.plot_fsp_matrices({"teacher": exp.train(arms["teacher"], data),
                                                      "student": exp.train(arms["fsp_stage1"], data)},
                                                     data.test.x[:16], p.pairs)}
    folder = exp.save(fsp.results_table(runs, p), exp.judge(fsp.CLAIMS), figures, notes=fsp.DEPARTURES)
    assert folder == isolated / "results" / "paper" / "fsp"
    claims = json.loads((folder / "claims.json").read_text())
    assert len(claims) == len(fsp.CLAIMS) and all(c["seeds"] == 2 for c in claims)
    assert (folder / "figures" / "curves.png").stat().st_size > 1000


def test_a_test_size_evaluates_on_a_fixed_slice_of_the_test_set(tiny_paper_profile, isolated, monkeypatch):
    monkeypatch.setitem(fsp.PROFILES, "paper", replace(tiny_paper_profile, test_size=7))
    whole = fsp.load(tiny_paper_profile)
    sliced = fsp.load(fsp.PROFILES["paper"])
    assert torch.equal(sliced.test.y, whole.test.y[:7]) and torch.equal(sliced.train.x, whole.train.x)
