"""The Born-Again Networks experiment end to end on tiny CIFAR-100 files: the `paper` profile's code path."""

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch
from conftest import write_cifar
from tiny_profiles import use_paper_profile

from kdrepro.experiment import Experiment
from kdrepro.experiments import born_again
from kdrepro.report import build_summary
from kdrepro.schemes import BornAgain

TINY_WRN = {"family": "wide_resnet", "depth": 10, "widen": 1, "base": 4}


@pytest.fixture
def tiny_paper_profile(monkeypatch, data_dir, isolated):
    write_cifar(data_dir / "cifar-100-python", classes=100, n_per_batch=40)
    paper = born_again.PROFILES["paper"]
    tiny = replace(paper, seeds=(0, 1), network=TINY_WRN,
                   recipe=replace(paper.recipe, epochs=2, milestones=(1,), batch_size=64))
    return use_paper_profile(monkeypatch, born_again, tiny)


def test_paper_profile_runs_every_arm_and_publishes_results(tiny_paper_profile, isolated):
    exp = Experiment(born_again, "paper")
    run = born_again.BornAgainNetworks(exp, born_again.load(exp.protocol))
    assert run.data.name == "cifar100" and run.data.input_shape == (3, 32, 32)
    for seed in exp.protocol.seeds:
        run.arms(seed)
    runs = exp.runs
    assert set(runs["arm"]) == {"teacher", "ban_1", "ban_2", "ban_3", "bane", "cwtm", "dkpp", "ban_1_labels"}
    assert set(runs.groupby("arm")["seed"].count()) == {2}
    assert runs["test_error"].between(0, 1).all()
    single = runs[runs["arm"] == "ban_1"]["parameters"].iloc[0]
    assert runs[runs["arm"] == "bane"]["parameters"].iloc[0] == 3 * single
    table = born_again.results_table(runs, exp.protocol)
    figures = {"generations": born_again.plot_generations(runs, exp.protocol)}
    folder = exp.save(table, exp.judge(born_again.CLAIMS), figures, notes=born_again.DEPARTURES)
    assert folder == isolated / "results" / "paper" / "born_again"
    assert (folder / "figures" / "generations.png").stat().st_size > 1000
    assert len(json.loads((folder / "claims.json").read_text())) == len(born_again.CLAIMS)
    assert len(pd.read_csv(folder / "runs.csv")) == len(runs)
    assert "born_again/README.md" in build_summary("paper").read_text()


def test_generations_are_trained_once_and_taught_by_their_predecessor_module(tiny_paper_profile, isolated,
                                                                             monkeypatch):
    exp = Experiment(born_again, "paper")
    run = born_again.BornAgainNetworks(exp, born_again.load(exp.protocol))
    teachers = []
    original = BornAgain.__init__

    def spy(self, teacher, *args, **kwargs):
        teachers.append(teacher)
        original(self, teacher, *args, **kwargs)

    monkeypatch.setattr(BornAgain, "__init__", spy)
    chain = run.chain(0)
    # augmented batches: each generation reads its predecessor itself, called on every batch
    assert len(chain) == 4 and len(teachers) == 3
    assert all(isinstance(t, torch.nn.Module) for t in teachers)
    assert all(torch.equal(t.state_dict()["fc.weight"], c.state_dict()["fc.weight"])
               for t, c in zip(teachers, chain[:-1]))
    again = run.chain(0)
    assert len(teachers) == 3  # the second chain is read from the cache
    assert torch.equal(again[3].state_dict()["fc.weight"], chain[3].state_dict()["fc.weight"])


def test_every_claim_names_arms_the_notebook_runs():
    arms = set(born_again.arm_descriptions(born_again.PROFILES["cpu"]))
    assert all(c.better in arms and c.worse in arms for c in born_again.CLAIMS)
