"""Adding a method touches only its own module (tests/toy_method.py) and its test: it trains through the one loop,
is cached by its spec and measured like every built-in method."""

import subprocess

import pytest
import torch
from test_arms import toy_data
from toy_method import LogitMatching, arms

from kdrepro.data import Batch
from kdrepro.experiment import Experiment
from kdrepro.experiments import hinton_kd
from kdrepro.measures import Classification
from kdrepro.objectives import Context
from kdrepro.paths import REPO_ROOT
from kdrepro.train import Recipe


def test_a_method_from_outside_the_package_trains_is_cached_and_measured(monkeypatch, isolated):
    monkeypatch.delenv("KDREPRO_PROFILE", raising=False)
    exp = Experiment(hinton_kd, "smoke")  # any paper's bookkeeping serves
    data, toy = toy_data(), arms(Recipe(epochs=2, batch_size=8, lr=0.1))
    exp.run_arms(list(toy.values()), data, Classification())
    runs = exp.runs
    assert list(runs["arm"]) == ["teacher", "student", "logit_matching"] * len(exp.protocol.seeds)
    assert runs["test_error"].between(0, 1).all()
    models = sorted((isolated / "cache" / "models").iterdir())
    assert len(models) == 3 * len(exp.protocol.seeds)
    again = Experiment(hinton_kd, "smoke")
    again.run_arms([toy["logit_matching"]], data, Classification())  # served from the cache, nothing retrained
    assert sorted((isolated / "cache" / "models").iterdir()) == models


def test_the_toy_objectives_terms_are_the_weighted_mse_and_the_cross_entropy():
    class Fixed:  # a teacher whose logits are known
        def outputs(self, batch):
            return torch.zeros(2, 3)

    model = torch.nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([1.0, 0.0, -1.0]))
    batch = Batch(torch.zeros(2, 2), torch.tensor([0, 2]), torch.tensor([0, 1]))
    terms = LogitMatching(weight=0.5).terms(model, batch, Context(teacher=Fixed()))
    assert terms["logits"].item() == pytest.approx(0.5 * 2 / 3)  # mean of (1, 0, 1) squared over 3 logits
    log_z = torch.log(torch.exp(torch.tensor([1.0, 0.0, -1.0])).sum()).item()
    assert terms["ce"].item() == pytest.approx(((log_z - 1) + (log_z + 1)) / 2)


def test_the_package_does_not_know_the_toy_method():
    found = subprocess.run(["grep", "-rl", "LogitMatching", str(REPO_ROOT / "kdrepro")], capture_output=True, text=True)
    assert found.stdout == ""
