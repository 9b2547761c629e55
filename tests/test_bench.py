"""The conventional loop `make bench` times against kdrepro's does the same computation as `fit`: given the same data,
normalisation, initial weights, batch order and optimiser, the two give the same loss at every step; and the bench's
table takes its speed-up and bound from the medians."""

import copy
import sys
from dataclasses import dataclass, field

import pytest
import torch
from conftest import write_mnist_format

from kdrepro.models import build
from kdrepro.paths import REPO_ROOT
from kdrepro.objectives import Objective
from kdrepro.objectives.response import ResponseKD
from kdrepro.schemes import Teacher
from kdrepro.seeds import seeded
from kdrepro.train import Recipe, fit

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the benchmark's modules sit beside its script, not in a package
import bench  # noqa: E402
import conventional  # noqa: E402

OFFICIAL, VAL, TRAIN, BATCH, EPOCHS = 120, 20, 64, 16, 2  # 4 steps an epoch, 8 in all
SEED, LR, TEMPERATURE, HARD_WEIGHT = 3, 0.05, 4.0, 0.1
# the two normalise in different float order, and eight SGD steps carry that on: up to 4e-5 relative measured (one
# thread); a real difference (normalisation constants, teacher, batch order) is 2.7e-2 relative or more
TOLERANCE = {"rtol": 1e-3, "atol": 1e-6}


@pytest.fixture
def root(data_dir):
    """A tiny Fashion-MNIST in torchvision's raw layout; kdrepro reads the same files (KDREPRO_DATA points here)."""
    write_mnist_format(data_dir / "FashionMNIST" / "raw", n_train=OFFICIAL, n_test=10)
    return data_dir


@dataclass(frozen=True)
class Recorded(Objective):
    """Another objective, with the loss of every step kept."""

    objective: Objective
    losses: list = field(default_factory=list, compare=False)

    def terms(self, model, batch, context):
        terms = self.objective.terms(model, batch, context)
        self.losses.append(sum(terms.values()).detach())
        return terms


def models(seed: int = 0):
    """A small teacher and student; batch norm makes the student's loss depend on which images share a batch."""
    with seeded(seed, "init"):
        return (build({"family": "resnet", "depth": 8, "channels": (8, 8, 16, 16)}, 10, 1),
                build({"family": "resnet", "depth": 8, "channels": (4, 4, 8, 8)}, 10, 1))


def kdrepro_losses(data, teacher, student) -> torch.Tensor:
    objective = Recorded(ResponseKD(TEMPERATURE, HARD_WEIGHT))
    recipe = Recipe(epochs=EPOCHS, batch_size=BATCH, lr=LR, schedule="constant")
    fit(student, objective, data.train, recipe, seed=SEED, teacher=Teacher(teacher, data.train.x),
        progress_seconds=None)
    return torch.stack(objective.losses)


def conventional_losses(dataset, teacher, student, seed: int = SEED) -> torch.Tensor:
    return conventional.distil(student, teacher, conventional.loader(dataset, BATCH, seed), epochs=EPOCHS, lr=LR,
                               temperature=TEMPERATURE, hard_weight=HARD_WEIGHT)


def test_the_conventional_loop_gives_fits_loss_at_every_step(root):
    data, dataset = conventional.same_data(root, TRAIN, VAL)
    teacher, student = models()
    ours = kdrepro_losses(data, teacher, copy.deepcopy(student))
    theirs = conventional_losses(dataset, teacher, copy.deepcopy(student))
    assert ours.shape == theirs.shape == (EPOCHS * TRAIN // BATCH,)
    assert torch.allclose(ours, theirs, **TOLERANCE), (ours - theirs).abs().max()


@pytest.mark.parametrize("difference", ["published normalisation", "another teacher", "another batch order"])
def test_the_comparison_notices_a_difference_between_the_loops(root, difference):
    data, dataset = conventional.same_data(root, TRAIN, VAL)
    teacher, student = models()
    ours = kdrepro_losses(data, teacher, copy.deepcopy(student))
    their_teacher, their_seed = teacher, SEED
    if difference == "published normalisation":  # Fashion-MNIST's usual constants, not this training set's
        dataset = conventional.fashion_mnist(root, conventional.training_rows(OFFICIAL, TRAIN, VAL), (0.2860, 0.3530))
    elif difference == "another teacher":
        their_teacher = models(seed=1)[0]
    else:
        their_seed = SEED + 1
    theirs = conventional_losses(dataset, their_teacher, copy.deepcopy(student), their_seed)
    assert not torch.allclose(ours, theirs, **TOLERANCE)


def test_a_throughput_row_gives_the_median_speed_up_and_its_bound():
    seconds = {"conventional": [12.0, 10.0, 11.0], "kdrepro": [4.0, 5.0, 4.5], "teacher logits": [0.5, 0.4, 0.6]}
    row = bench.throughput_row(torch.device("cpu"), "resnet20", seconds)
    # 11 / 4.5 with the teacher's logits counted; 11 / (4.5 - 0.5) without them
    assert (row["speed-up"], row["bound"]) == ("**2.44x**", "2.75x")
    assert row["conventional (images/s)"] == f"{bench.EPOCHS * bench.IMAGES / 11:,.0f}"
    assert row["teacher parameters"] == "272,186"


# --- the cpu budgets ----------------------------------------------------------------------------------------------

def test_a_notebooks_cold_time_alone_is_its_runs_shared_by_two_workers_then_its_render():
    assert bench.alone_on_two_cores({"runs_seconds": 500.0, "render_seconds": 30.0}) == 280.0
    assert bench.alone_on_two_cores({"runs_seconds": 0.0, "render_seconds": None}) is None


def test_the_budgets_table_holds_a_cold_reproduce_against_its_budgets(isolated, monkeypatch):
    import json

    from kdrepro import experiments
    papers = {paper: {"runs_seconds": 600.0, "render_seconds": 20.0} for paper in experiments.PAPERS}
    papers["hinton_kd"] = {"runs_seconds": 900.0, "render_seconds": 20.0}          # 470 s: over its 420
    record = {"finished": "2026-11-29T23:00:00+0000", "wall_seconds": 1700.0, "jobs": 2, "cold": True,
              "every_paper": True, "papers": papers}
    (isolated / "results" / "cpu").mkdir(parents=True)
    (isolated / "results" / "cpu" / "reproduce.json").write_text(json.dumps(record))
    monkeypatch.setattr(bench, "warm_reproduce_seconds", lambda: 75.0)
    title, rows, _ = bench.budgets()
    by_what = {row["what"]: row for row in rows}
    assert by_what["01_hinton_kd.ipynb"]["seconds"] == "470" and by_what["01_hinton_kd.ipynb"]["within"] == "**no**"
    assert by_what["02_fitnets.ipynb"]["seconds"] == "320" and by_what["02_fitnets.ipynb"]["within"] == "yes"
    assert by_what["`make reproduce`, cold"]["within"] == "yes"                    # 1700 s of 1800
    assert by_what["`make reproduce`, warm"]["within"] == "**no**"                 # 75 s of 60


def test_a_reproduce_that_began_warm_is_not_held_against_the_cold_budgets(isolated, monkeypatch):
    import json
    record = {"wall_seconds": 60.0, "cold": False, "every_paper": True,
              "papers": {"hinton_kd": {"runs_seconds": 0.0, "render_seconds": 20.0}}}
    (isolated / "results" / "cpu").mkdir(parents=True)
    (isolated / "results" / "cpu" / "reproduce.json").write_text(json.dumps(record))
    monkeypatch.setattr(bench, "warm_reproduce_seconds", lambda: None)
    _, rows, _ = bench.budgets()
    assert all(row["within"] == "not measured" for row in rows)


def test_decoding_speed_decodes_every_test_source_of_the_task_greedily_and_with_the_beam():
    from kdrepro.experiments import seqkd
    protocol = seqkd.PROFILES["smoke"]
    data = seqkd.load(protocol)
    rows = bench.decoding_on(torch.device("cpu"), data, protocol)
    assert [row["model"] for row in rows] == ["teacher 1x32", "student 1x16"]
    words = bench.decode(bench.seqkd_models(data, protocol, torch.device("cpu"))["student 1x16"],
                         data.corpus.sources(data.corpus.test), 1, protocol.max_len)
    assert words == len(data.corpus.test) * protocol.max_len   # EOS forbidden: every output is max_len words


def test_a_decoding_speed_is_divided_by_the_reference_machines_for_the_cpu_profiles_models():
    assert bench.against_reference("teacher 2x128", 51_775, 55_422) == "0.50x / 2.00x"  # 103,550 and 27,711 there
    assert bench.against_reference("teacher 1x32", 1.0, 1.0) == ""   # a smoke model: no reference
