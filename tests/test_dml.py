"""The Deep Mutual Learning experiment end to end on tiny CIFAR-100 files: the `paper` profile's code path."""

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch
from conftest import write_cifar
from tiny_profiles import use_paper_profile

from kdrepro.data import Split
from kdrepro.experiment import Experiment
from kdrepro.experiments import dml
from kdrepro.models import build, mlp
from kdrepro.report import build_summary

TINY_A = {"family": "resnet", "depth": 8, "channels": (4, 4, 8, 8)}
TINY_B = {"family": "wide_resnet", "depth": 10, "widen": 1, "base": 4}


@pytest.fixture
def tiny_paper_profile(monkeypatch, data_dir, isolated):
    write_cifar(data_dir / "cifar-100-python", classes=100, n_per_batch=40)
    paper = dml.PROFILES["paper"]
    tiny = replace(paper, seeds=(0, 1), network_a=TINY_A, network_b=TINY_B,
                   recipe=replace(paper.recipe, epochs=2, milestones=(1,), batch_size=64), noise_draws=1,
                   noise_images=50)
    return use_paper_profile(monkeypatch, dml, tiny)


def test_paper_profile_runs_every_arm_and_publishes_results(tiny_paper_profile, isolated):
    exp = Experiment(dml, "paper")
    run = dml.DeepMutualLearning(exp, dml.load(exp.protocol))
    assert run.data.name == "cifar100" and run.data.input_shape == (3, 32, 32) and len(run.data.train) == 200
    assert exp.protocol.recipe.augments  # crops and flips, as the paper trains
    for seed in exp.protocol.seeds:
        for role in ("a", "b"):
            run.independent_arm(role, seed)
        for cohort in dml.COHORTS:
            run.cohort_arm(cohort, seed)
    runs = exp.runs
    expected = {"independent_a", "independent_b", "dml_aa", "dml_aa_1", "dml_aa_2", "dml_ab", "dml_ab_1", "dml_ab_2",
                "dml_aaa", "dml_aaa_1", "dml_aaa_2", "dml_aaa_3"}
    assert set(runs["arm"]) == expected and set(runs.groupby("arm")["seed"].count()) == {2}
    assert runs["test_error"].between(0, 1).all()
    pair = runs[runs["arm"].isin(["dml_aa_1", "dml_aa_2"])].groupby("seed")["test_error"].mean()
    assert pair.tolist() == pytest.approx(runs[runs["arm"] == "dml_aa"].sort_values("seed")["test_error"].tolist())
    curves = runs[runs["arm"] == "dml_aaa_3"]["train_loss"].tolist()
    assert all(len(c) == 2 for c in curves)
    assert runs[runs["arm"] == "dml_ab_2"]["parameters"].iloc[0] == sum(
        p.numel() for p in build(TINY_B, 100).parameters())
    table = dml.results_table(runs, exp.protocol)
    figures = {"learning_curves": dml.plot_learning_curves(runs), "weight_noise": dml.plot_weight_noise(
        runs, exp.protocol), "arms": dml.plot_arms(runs, exp.protocol)}
    folder = exp.save(table, exp.judge(dml.CLAIMS), figures, notes=dml.DEPARTURES)
    assert folder == isolated / "results" / "paper" / "dml"
    assert (folder / "figures" / "learning_curves.png").stat().st_size > 1000
    assert len(json.loads((folder / "claims.json").read_text())) == len(dml.CLAIMS)
    assert len(pd.read_csv(folder / "runs.csv")) == len(runs)
    assert "dml/README.md" in build_summary("paper").read_text()


def test_a_peer_and_its_lone_self_start_from_the_same_weights(tiny_paper_profile, isolated):
    exp = Experiment(dml, "paper")
    run = dml.DeepMutualLearning(exp, dml.load(exp.protocol))
    alone, first, second = run.network("a", 3), run.network("a", 3, 0), run.network("a", 3, 1)
    assert all(torch.equal(p, q) for p, q in zip(alone.parameters(), first.parameters()))
    assert not torch.equal(next(alone.parameters()), next(second.parameters()))


def test_every_claim_names_arms_the_notebook_runs():
    arms = set(dml.arm_descriptions(dml.PROFILES["cpu"])) | {f"{c}_{k}" for c, r in dml.COHORTS.items()
                                                              for k in range(1, len(r) + 1)}
    assert all(c.better in arms and c.worse in arms for c in dml.CLAIMS)


def test_weight_noise_of_zero_raises_nothing_and_the_model_is_left_unchanged():
    torch.manual_seed(0)
    model = mlp((1, 4, 4), (8,), 3)
    split = Split(torch.randn(40, 1, 4, 4), torch.randint(0, 3, (40,)))
    before = [p.clone() for p in model.parameters()]
    assert dml.loss_under_weight_noise(model, split, 0.0, draws=2) == pytest.approx(0.0, abs=1e-6)
    assert dml.loss_under_weight_noise(model, split, 0.5, draws=2) != pytest.approx(0.0, abs=1e-3)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))


def test_vectorised_peers_compute_what_each_peer_computes():
    peers = [build(TINY_A, 10, 1) for _ in range(3)]
    x = torch.randn(8, 1, 12, 12)
    parameters, batched = dml.batched_peers(peers)
    torch.testing.assert_close(batched(x), torch.stack([peer(x) for peer in peers]))
    assert parameters["fc.weight"].shape[0] == 3 and parameters["fc.weight"].requires_grad


def test_step_costs_reports_each_way_for_each_k():
    rows = dml.step_costs(lambda: build(TINY_A, 10, 1), (1, 2), torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]),
                          repeats=1)
    assert [r["peers K"] for r in rows] == [1, 2]
    assert all(r["cohort, torch.func vmap"].endswith(" ms") for r in rows)
