"""The Hinton KD experiment end to end on tiny MNIST-format files: the `paper` profile's code path, offline."""

import json
from dataclasses import replace

import pandas as pd
import pytest
from conftest import write_mnist_format
from tiny_profiles import use_paper_profile

from kdrepro.claims import Alike
from kdrepro.experiment import Experiment, resolve_profile
from kdrepro.experiments import hinton_kd
from kdrepro.report import build_summary
from kdrepro.train import Recipe


@pytest.fixture
def tiny_paper_profile(monkeypatch, data_dir, isolated):
    write_mnist_format(data_dir / "MNIST" / "raw", n_train=300, n_test=100)
    paper = hinton_kd.PROFILES["paper"]
    tiny = replace(paper, train_size=200, val_size=100, seeds=(0, 1), teacher_hidden=(32, 32), student_hidden=(16, 16),
                   small_hidden=(4, 4), teacher_recipe=replace(paper.teacher_recipe, epochs=2),
                   student_recipe=replace(paper.student_recipe, epochs=2), sweep_temperatures=(1.0, 20.0),
                   small_fraction=0.1)
    return use_paper_profile(monkeypatch, hinton_kd, tiny)


def run_every_arm(exp: Experiment) -> hinton_kd.HintonKD:
    p = exp.protocol
    run = hinton_kd.HintonKD(exp, hinton_kd.load(p))
    small_set = run.subset(p.small_fraction)
    for seed in p.seeds:
        run.teacher_arm(seed)
        run.student_arm("student", seed)
        run.student_arm("kd", seed, temperature=p.temperature)
        run.student_arm("small_student", seed, small=True)
        for t in p.sweep_temperatures:
            run.student_arm(f"kd_T{t:g}", seed, temperature=t)
            run.student_arm(f"small_kd_T{t:g}", seed, small=True, temperature=t)
        run.omitted_class_arms(seed)
        run.student_arm("hard_small", seed, transfer=small_set)
        run.student_arm("soft_small", seed, transfer=small_set, temperature=p.temperature)
    return run


def test_paper_profile_runs_every_arm_and_publishes_results(tiny_paper_profile, isolated):
    exp = Experiment(hinton_kd, "paper")
    run = run_every_arm(exp)
    assert run.data.name == "mnist" and run.data.input_shape == (1, 28, 28)
    runs = exp.runs
    assert set(runs.groupby("arm")["seed"].count()) == {2}
    assert runs["test_error"].between(0, 1).all()
    hard = runs[runs["arm"] == "scratch_omit"]
    assert (hard["omitted_error"] == 1.0).all()  # labels without the class can never teach it
    table = hinton_kd.results_table(runs, exp.protocol, "3")
    claims = [c for c in hinton_kd.CLAIMS if not isinstance(c, Alike) and {c.better, c.worse} <= set(runs["arm"])]
    figures = {"temperature_sweep": hinton_kd.plot_temperature_sweep(runs, exp.protocol),
               "soft_targets": hinton_kd.plot_soft_targets(run.teacher(0), run.data, label=3)}
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
    run = hinton_kd.HintonKD(first, hinton_kd.load(first.protocol))
    a = run.student_arm("kd", 0, temperature=20.0)
    trained = list((isolated / "cache" / "models").iterdir())
    second = Experiment(hinton_kd, "paper")
    b = hinton_kd.HintonKD(second, run.data).student_arm("kd", 0, temperature=20.0)
    assert a == b and list((isolated / "cache" / "models").iterdir()) == trained


def test_the_omitted_class_bias_is_chosen_on_validation_only(tiny_paper_profile, isolated, monkeypatch):
    exp = Experiment(hinton_kd, "paper")
    run = hinton_kd.HintonKD(exp, hinton_kd.load(exp.protocol))
    seen = []
    original = hinton_kd.classification_metrics

    def spy(logits, labels):
        seen.append(labels.data_ptr())
        return original(logits, labels)

    monkeypatch.setattr(hinton_kd, "classification_metrics", spy)
    run._bias_corrected(hinton_kd.mlp((1, 28, 28), (4,), 10))
    choices = seen[:-2]  # the last two calls measure the chosen shift on the test set
    assert len(choices) == 151 and set(choices) == {run.data.val.y.data_ptr()}
    assert seen[-2] == run.data.test.y.data_ptr()


def test_profile_resolution_prefers_the_environment_and_rejects_unknown_names(monkeypatch):
    monkeypatch.setenv("KDREPRO_PROFILE", "smoke")
    assert resolve_profile("hinton_kd", "cpu") == "smoke"
    monkeypatch.setenv("KDREPRO_PROFILE", "huge")
    with pytest.raises(ValueError, match="unknown profile 'huge' for hinton_kd; choose one of smoke, cpu, paper"):
        resolve_profile("hinton_kd", "cpu")


def test_every_claim_names_arms_the_notebook_runs():
    arms = set(hinton_kd.arm_descriptions(hinton_kd.PROFILES["cpu"], "Dress"))
    named = [(c.first, c.second) if isinstance(c, Alike) else (c.better, c.worse) for c in hinton_kd.CLAIMS]
    assert all(a in arms and b in arms for a, b in named)


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


def test_same_steps_gives_a_small_transfer_set_the_full_sets_number_of_steps():
    recipe = Recipe(epochs=40, batch_size=128)
    assert hinton_kd.same_steps(recipe, 5000, 5000).epochs == 40        # 40 batches an epoch
    assert hinton_kd.same_steps(recipe, 5000, 150).epochs == 800        # 2 batches an epoch: 1,600 steps
    assert hinton_kd.same_steps(recipe, 5000, 4500).epochs == 44        # 36 batches: 1,584 steps, the nearest
