"""The Born-Again Networks experiment end to end on tiny CIFAR-100 files (the `paper` profile's code path), its
arms as data, and the measures it reads."""

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch
from conftest import write_cifar
from tiny_profiles import use_paper_profile

from kdrepro.arms import Net
from kdrepro.claims import Fits
from kdrepro.data import Data, Split
from kdrepro.experiment import Experiment
from kdrepro.experiments import born_again
from kdrepro.measures import Classification, Ensemble, TrainingError
from kdrepro.objectives.response import BornAgain, ConfidenceWeighted, DarkKnowledgePermuted
from kdrepro.objectives.task import LabelSmoothing
from kdrepro.plan import needed_arms
from kdrepro.report import build_summary
from kdrepro.schemes import Cohort

TINY_WRN = {"family": "wide_resnet", "depth": 10, "widen": 1, "base": 4}
EVERY_ARM = {"teacher", "ban_1", "ban_2", "ban_3", "bane", "cwtm", "dkpp", "label_smoothing"}


@pytest.fixture
def tiny_paper_profile(monkeypatch, data_dir, isolated):
    write_cifar(data_dir / "cifar-100-python", classes=100, n_per_batch=40)
    paper = born_again.PROFILES["paper"]
    tiny = replace(paper, seeds=(0, 1), network=TINY_WRN,
                   recipe=replace(paper.recipe, epochs=2, milestones=(1,), batch_size=64))
    return use_paper_profile(monkeypatch, born_again, tiny)


def run_every_arm(exp: Experiment, data: Data) -> None:
    arms, measure = born_again.arms(exp.protocol), born_again.measure(exp.protocol)
    exp.run_arms(list(arms.values()), data, measure)
    bane, bane_measure = born_again.ensemble(exp.protocol)
    exp.run_arms([bane], data, bane_measure)


def test_paper_profile_runs_every_arm_and_publishes_results(tiny_paper_profile, isolated):
    exp = Experiment(born_again, "paper")
    data = born_again.load(exp.protocol).to(exp.device)
    assert data.name == "cifar100" and data.input_shape == (3, 32, 32)
    run_every_arm(exp, data)
    runs = exp.runs
    assert set(runs["arm"]) == EVERY_ARM and set(runs.groupby("arm")["seed"].count()) == {2}
    assert runs["test_error"].between(0, 1).all() and runs["train_error"].between(0, 1).all()
    single = runs[runs["arm"] == "ban_1"]["parameters"].iloc[0]
    assert runs[runs["arm"] == "bane"]["parameters"].iloc[0] == 3 * single
    # teacher, three generations, two ablations and the label-smoothing control, at each seed; BANE trains nothing
    assert len(list((isolated / "cache" / "models").iterdir())) == 2 * 7
    table = born_again.results_table(runs, exp.protocol)
    figures = {"generations": born_again.plot_generations(runs, exp.protocol)}
    folder = exp.save(table, exp.judge(born_again.CLAIMS), figures, notes=born_again.DEPARTURES)
    assert folder == isolated / "results" / "paper" / "born_again"
    assert (folder / "figures" / "generations.png").stat().st_size > 1000
    assert len(json.loads((folder / "claims.json").read_text())) == len(born_again.CLAIMS)
    assert len(pd.read_csv(folder / "runs.csv")) == len(runs)
    assert "born_again/README.md" in build_summary("paper").read_text()
    shown = born_again.show_dark_knowledge_permutation(exp.train(born_again.arms(exp.protocol)["teacher"], data),
                                                       data, seed=0)
    assert shown["DKPP target"].sum() == pytest.approx(1, abs=1e-3) and len(shown) == 100


def test_generations_chain_from_the_teacher_and_the_ablations_share_generation_ones_start():
    p = born_again.PROFILES["cpu"]
    arms = born_again.arms(p)
    assert list(arms) == ["teacher", "ban_1", "ban_2", "ban_3", "cwtm", "dkpp", "label_smoothing"]
    assert arms["teacher"].teacher is None and arms["teacher"].net == Net(p.network, "teacher")
    for k in (1, 2, 3):
        assert arms[f"ban_{k}"].teacher == arms["teacher" if k == 1 else f"ban_{k - 1}"]
        assert arms[f"ban_{k}"].objective == BornAgain(p.hard_weight)
    assert len({arms[name].net.init for name in ("teacher", "ban_1", "ban_2", "ban_3")}) == 4  # fresh weights
    for name, objective in (("cwtm", ConfidenceWeighted()), ("dkpp", DarkKnowledgePermuted(p.hard_weight))):
        assert arms[name] == replace(arms["ban_1"], name=name, objective=objective)
    # the control: generation 1's start and batches, smoothed labels, no teacher
    assert arms["label_smoothing"] == replace(arms["ban_1"], name="label_smoothing", teacher=None,
                                              objective=LabelSmoothing(p.smoothing))
    assert {arm.recipe for arm in arms.values()} == {p.recipe}


def test_every_claim_names_arms_the_notebook_runs():
    arms = set(born_again.arms(born_again.PROFILES["cpu"])) | {"bane"}
    assert set(born_again.arm_descriptions(born_again.PROFILES["cpu"])) == arms == EVERY_ARM
    assert all(c.better in arms and c.worse in arms for c in born_again.CLAIMS)


def test_every_claim_needs_a_teacher_that_fits_its_training_set_and_the_cpu_teacher_can():
    assert all(claim.preconditions == (Fits("teacher"),) for claim in born_again.CLAIMS)
    p = born_again.PROFILES["cpu"]
    # the paper's regime on a budget: a small training set and enough epochs to memorise it (the pilot's teachers
    # fit 1,000 images in 25 epochs)
    assert p.train_size <= 1000 and p.recipe.epochs >= 25


def test_training_error_adds_the_error_on_the_training_split():
    x = torch.eye(4).reshape(4, 1, 2, 2)
    train, test = Split(x, torch.tensor([0, 1, 2, 3])), Split(x, torch.tensor([0, 1, 2, 0]))
    data = Data("toy", train, test, test, tuple("abcd"))
    identity = torch.nn.Flatten()  # predicts the class of the one bright pixel
    assert TrainingError()(identity, data) == {**Classification()(identity, data), "train_error": 0.0}
    assert TrainingError()(identity, data)["test_error"] == 0.25


def test_the_ensemble_of_generations_is_read_as_one_model():
    x = torch.eye(3).reshape(3, 1, 1, 3)
    split = Split(x, torch.tensor([0, 1, 2]))
    data = Data("toy", split, split, split, tuple("abc"))
    sure_of_0 = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 3))
    with torch.no_grad():  # outputs class 0 with logit 4 for every image, whatever it shows
        sure_of_0[1].weight.zero_()
        sure_of_0[1].bias.copy_(torch.tensor([4.0, 0.0, 0.0]))
    right = torch.nn.Flatten()  # the one bright pixel, logit 1: its own class, less sure
    assert TrainingError()(Cohort([right, right]), data)["test_error"] == 0.0
    assert TrainingError()(Cohort([sure_of_0, right]), data)["test_error"] == pytest.approx(2 / 3)


def test_an_ensemble_measure_reads_the_other_members_first_and_the_runs_model_last():
    x = torch.eye(3).reshape(3, 1, 1, 3)
    split = Split(x, torch.tensor([0, 1, 2]))
    data = Data("toy", split, split, split, tuple("abc"))
    first, last = torch.nn.Flatten(), torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 3))
    reading = Ensemble((born_again.arms(born_again.PROFILES["cpu"])["ban_1"],), TrainingError())(last, data, first)
    assert reading == TrainingError()(Cohort([first, last]), data)


def test_bane_is_listed_at_every_seed_and_needs_every_generation_of_its_seed():
    p = born_again.PROFILES["cpu"]
    bane_runs = [run for run in born_again.runs(p) if run.arm.name == "bane"]
    assert [run.arm.seed for run in bane_runs] == list(p.seeds)
    needed = needed_arms(bane_runs[-1])
    assert {arm.seed for arm in needed} == {p.seeds[-1]}
    assert {arm.name for arm in needed} == {"teacher", "ban_1", "ban_2", "bane"}  # bane: generation 3's model
    assert needed[-1].key() == born_again.arms(p)["ban_3"].at(p.seeds[-1]).key()
