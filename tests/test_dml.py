"""The Deep Mutual Learning experiment end to end on tiny CIFAR-100 files (the `paper` profile's code path), and
the measures it reads its cohorts with."""

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch
from conftest import write_cifar
from tiny_profiles import use_paper_profile

from kdrepro.arms import Net
from kdrepro.data import Data, Split
from kdrepro.experiment import Experiment
from kdrepro.experiments import dml
from kdrepro.measures import PARTS, Classification, PeerMean, TrainingError, WeightNoise, loss_under_weight_noise
from kdrepro.models import build, count_parameters, mlp
from kdrepro.objectives.task import LabelSmoothing
from kdrepro.report import build_summary
from kdrepro.schemes import Cohort, CohortNet

TINY_A = {"family": "resnet", "depth": 8, "channels": (4, 4, 8, 8)}
TINY_B = {"family": "wide_resnet", "depth": 10, "widen": 1, "base": 4}
EVERY_ARM = {"independent_a", "independent_b", "label_smoothing_a", "dml_aa", "dml_ab", "dml_aaa"}
EVERY_ROW = EVERY_ARM | {"dml_aa_1", "dml_aa_2", "dml_ab_1", "dml_ab_2", "dml_aaa_1", "dml_aaa_2", "dml_aaa_3"}


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
    data = dml.load(exp.protocol).to(exp.device)
    assert data.name == "cifar100" and data.input_shape == (3, 32, 32) and len(data.train) == 200
    assert exp.protocol.recipe.augments  # crops and flips, as the paper trains
    dml.run_arms(exp, dml.arms(exp.protocol), data, dml.measures(exp.protocol))
    runs = exp.runs
    assert set(runs["arm"]) == EVERY_ROW and set(runs.groupby("arm")["seed"].count()) == {2}
    assert runs["test_error"].between(0, 1).all()
    pair = runs[runs["arm"].isin(["dml_aa_1", "dml_aa_2"])].groupby("seed")["test_error"].mean()
    assert pair.tolist() == pytest.approx(runs[runs["arm"] == "dml_aa"].sort_values("seed")["test_error"].tolist())
    assert runs[runs["arm"] == "dml_aa"]["ensemble_test_error"].between(0, 1).all()
    curves = runs[runs["arm"] == "dml_aaa_3"]["train_loss"].tolist()
    assert all(len(c) == 2 for c in curves)
    assert runs[runs["arm"] == "dml_ab_2"]["network"].tolist() == ["b", "b"]
    assert runs[runs["arm"] == "dml_ab_2"]["parameters"].iloc[0] == sum(
        p.numel() for p in build(TINY_B, 100).parameters())
    probed = set(runs[runs["noise_loss_rise"].notna()]["arm"])
    assert probed == {"independent_a", "dml_aa", "dml_aa_1", "dml_aa_2"}
    table = dml.results_table(runs, exp.protocol)
    figures = {"learning_curves": dml.plot_learning_curves(runs), "weight_noise": dml.plot_weight_noise(
        runs, exp.protocol), "arms": dml.plot_arms(runs, exp.protocol)}
    folder = exp.save(table, exp.judge(dml.CLAIMS), figures, notes=dml.DEPARTURES)
    assert folder == isolated / "results" / "paper" / "dml"
    assert (folder / "figures" / "learning_curves.png").stat().st_size > 1000
    assert len(json.loads((folder / "claims.json").read_text())) == len(dml.CLAIMS)
    assert len(pd.read_csv(folder / "runs.csv")) == len(runs)
    assert "dml/README.md" in build_summary("paper").read_text()


def test_a_cohort_trains_once_and_its_learning_curves_come_back_from_the_cache(tiny_paper_profile, isolated):
    first = Experiment(dml, "paper")
    data = dml.load(first.protocol).to(first.device)
    arms = {"dml_aa": dml.arms(first.protocol)["dml_aa"]}
    dml.run_arms(first, arms, data, dml.measures(first.protocol))
    assert len(list((isolated / "cache" / "models").iterdir())) == 2  # one cohort, at each of two seeds
    assert len(list((isolated / "cache" / "runs").glob("dml-*"))) == 2  # measured once: the mean and each peer
    history = first.histories(arms["dml_aa"].at(0), data)[0]
    assert set(history.terms) == {"ce_1", "kl_1", "ce_2", "kl_2"}
    second = Experiment(dml, "paper")
    assert second.histories(arms["dml_aa"].at(0), data) == [history]
    dml.run_arms(second, arms, data, dml.measures(second.protocol))
    pd.testing.assert_frame_equal(second.runs, first.runs)
    row = second.runs.query("arm == 'dml_aa_2' and seed == 0").iloc[0]
    assert row["train_loss"] == history.terms["ce_2"]


def test_a_peer_and_its_lone_self_start_from_the_same_weights():
    p = dml.PROFILES["smoke"]
    arms, data = dml.arms(p), toy_data(shape=(1, 14, 14))
    alone = arms["independent_a"].net.build(3, data)
    for cohort in ("dml_aa", "dml_ab", "dml_aaa"):
        peers = arms[cohort].net.build(3, data).peers
        assert all(torch.equal(p, q) for p, q in zip(alone.parameters(), peers[0].parameters()))
    pair, trio = arms["dml_aa"].net.build(3, data).peers, arms["dml_aaa"].net.build(3, data).peers
    assert not torch.equal(next(alone.parameters()), next(pair[1].parameters()))
    assert all(torch.equal(p, q) for p, q in zip(pair[1].parameters(), trio[1].parameters()))
    mixed = arms["dml_ab"].net.build(3, data).peers[1]
    assert all(torch.equal(p, q) for p, q in zip(arms["independent_b"].net.build(3, data).parameters(),
                                                 mixed.parameters()))


def test_a_cohort_is_one_arm_read_as_the_mean_and_as_each_peer():
    p = dml.PROFILES["cpu"]
    arms, measures = dml.arms(p), dml.measures(p)
    assert arms["dml_ab"].net == CohortNet((Net(p.network_a, "a"), Net(p.network_b, "b")))
    assert arms["dml_aaa"].net.peers[2] == Net(p.network_a, "a#3")
    probe = WeightNoise(p.noise_sigmas, p.noise_sigma, p.noise_draws, p.noise_images)
    assert measures["dml_aa"] == PeerMean(probe) and measures["dml_ab"] == PeerMean(TrainingError())
    assert measures["independent_a"] == probe


def test_the_larger_network_is_larger_and_the_control_is_network_a_alone_on_smoothed_labels():
    p = dml.PROFILES["cpu"]
    small, large = (count_parameters(build(net, 10, 1, (1, 14, 14))) for net in (p.network_a, p.network_b))
    assert large >= 3 * small  # "the smaller and the larger network" differ in size, not by 0.5%
    arms = dml.arms(p)
    assert arms["label_smoothing_a"] == replace(arms["independent_a"], name="label_smoothing_a",
                                                objective=LabelSmoothing(p.smoothing))
    # mutual learning is claimed to regularise: every claim but the cohort's needs the networks alone to fit
    assert all(claim.preconditions for claim in dml.CLAIMS)


def test_every_claim_names_arms_the_notebook_runs():
    arms = set(dml.arms(dml.PROFILES["cpu"]))
    assert arms == EVERY_ARM and set(dml.measures(dml.PROFILES["cpu"])) == arms
    assert set(dml.arm_descriptions(dml.PROFILES["cpu"])) <= EVERY_ROW
    assert all(c.better in EVERY_ROW and c.worse in EVERY_ROW for c in dml.CLAIMS)


# --- the measures ---------------------------------------------------------------------------------------------------

def toy_data(n: int = 40, shape: tuple[int, ...] = (1, 4, 4), classes: int = 3) -> Data:
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(0))
    split = Split(x, torch.arange(n) % classes)
    return Data("toy", split, split, split, tuple("abc"[:classes]))


def small_net(seed: int) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return mlp((1, 4, 4), (8,), 3)


def test_weight_noise_of_zero_raises_nothing_and_the_model_is_left_unchanged():
    model, split = small_net(0), toy_data().train
    before = [p.clone() for p in model.parameters()]
    assert loss_under_weight_noise(model, split, 0.0, draws=2, seed=0) == pytest.approx(0.0, abs=1e-6)
    assert loss_under_weight_noise(model, split, 0.5, draws=2, seed=0) != pytest.approx(0.0, abs=1e-3)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))


def test_weight_noise_is_drawn_from_the_runs_seed():
    model, split = small_net(0), toy_data().train
    same = [loss_under_weight_noise(model, split, 0.3, draws=1, seed=seed) for seed in (1, 1, 2)]
    assert same[0] == same[1] != same[2]
    probe = WeightNoise((0.1, 0.3), 0.3, draws=1, images=40)
    assert probe.at(2) == replace(probe, seed=2)
    assert PeerMean(probe).at(2) == PeerMean(probe.at(2)) and Classification().at(2) == Classification()
    reading = probe.at(2)(model, toy_data())
    assert reading["noise_loss_rise"] == reading["noise_loss_rises"][1] == pytest.approx(same[2])


def test_weight_noise_reads_one_of_its_sigmas():
    with pytest.raises(ValueError, match="must be one of sigmas"):
        WeightNoise((0.01, 0.02), 0.03, draws=1, images=10)


def test_each_peer_is_read_on_its_own_and_the_mean_over_peers_with_the_ensemble():
    first, second = small_net(0), small_net(1)
    data = toy_data()
    cohort = Cohort([first, second])
    readings = [Classification()(peer, data) for peer in (first, second)]
    mean = PeerMean(Classification())(cohort, data)
    assert mean.pop(PARTS) == {"1": readings[0], "2": readings[1]}
    ensemble = (torch.softmax(first(data.test.x), 1) + torch.softmax(second(data.test.x), 1)).argmax(1)
    assert mean == pytest.approx({"test_error": (readings[0]["test_error"] + readings[1]["test_error"]) / 2,
                                  "val_error": (readings[0]["val_error"] + readings[1]["val_error"]) / 2,
                                  "ensemble_test_error": (ensemble != data.test.y).float().mean().item()})
