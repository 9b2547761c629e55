"""`python -m kdrepro pilot`: a claim sized on validation data only, at seeds that are never committed."""

import math

import pandas as pd
import pytest

from kdrepro.claims import Claim, Precondition, minimum_detectable_effect, seeds_needed
from kdrepro.cli import main, parse_seeds
from kdrepro.experiments import hinton_kd
from kdrepro.pilot import pilot_runs, size_claim

# validation errors: kd gains 2, 1 and 2 points over the student; the test errors say the opposite, and must not count
RUNS = pd.DataFrame({
    "arm": ["student", "kd", "teacher"] * 3,
    "seed": [100] * 3 + [101] * 3 + [102] * 3,
    "val_error": [0.20, 0.18, 0.10, 0.22, 0.21, 0.10, 0.21, 0.19, 0.10],
    "test_error": [0.10, 0.30, 0.10, 0.10, 0.30, 0.10, 0.10, 0.30, 0.10],
})
CLAIM = Claim("kd beats the student", better="kd", worse="student", paper=(146, 74), source="section 3",
              preconditions=(Precondition("teacher", "student"), Precondition("student", "teacher")))


def test_a_claim_is_sized_from_its_validation_gains_in_points():
    row = size_claim(CLAIM, RUNS, committed_seeds=5)
    sd = math.sqrt(1 / 3) / 100                       # gains 2, 1, 2 points: mean 5/3, SD sqrt(1/3) points
    assert row["validation_gain"] == pytest.approx(5 / 3)
    assert row["sd_of_gains"] == pytest.approx(math.sqrt(1 / 3))
    assert row["sesoi"] == pytest.approx(0.5 * (146 - 74) / 146 * 21)   # half the paper's 49% of the student's 21%
    assert row["mde_at_committed_seeds"] == pytest.approx(minimum_detectable_effect(sd, 5) * 100)
    assert row["seeds_needed"] == seeds_needed(sd, row["sesoi"] / 100)
    assert row["preconditions"] == "fail: student leads teacher by at least 5% of teacher's mean"


def test_a_metric_of_training_images_only_is_read_as_it_is_and_a_test_metric_never():
    runs = RUNS.assign(noise_loss_rise=[0.5, 0.2, 0.0] * 3)
    row = size_claim(Claim("kd's minimum is wider", better="kd", worse="student", metric="noise_loss_rise"), runs, 5)
    assert row["validation_gain"] == pytest.approx(0.3) and row["sd_of_gains"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="the runs record no val_bleu"):
        size_claim(Claim("kd translates better", better="kd", worse="student", metric="bleu",
                         lower_is_better=False), RUNS.assign(bleu=1.0), 5)


def test_an_arm_no_listed_run_makes_is_named_not_sized():
    row = size_claim(Claim("an ensemble beats the student", better="ensemble", worse="student"), RUNS, 5)
    assert "ensemble" in row["note"] and "sd_of_gains" not in row


def test_a_pilot_refuses_the_committed_seeds():
    with pytest.raises(ValueError, match="--seeds 0: committed seeds of hinton_kd's 'smoke' profile"):
        pilot_runs(hinton_kd, "smoke", (0, 100))


@pytest.mark.parametrize("text, message", [("100", "at least two seeds"), ("1a,2", "comma-separated integers")])
def test_pilot_seeds_that_cannot_size_anything_are_refused(text, message):
    with pytest.raises(SystemExit, match=message):
        parse_seeds(text)


def test_the_pilot_command_writes_a_row_per_claim(tiny_fashion_mnist, monkeypatch):
    monkeypatch.delenv("KDREPRO_PROFILE", raising=False)
    main(["pilot", "--profile", "smoke", "--papers", "hinton_kd", "--seeds", "100,101"])
    table = pd.read_csv(tiny_fashion_mnist / "results" / "smoke" / "pilots" / "hinton_kd.csv")
    assert list(table["claim"]) == [claim.statement for claim in hinton_kd.CLAIMS]
    assert (table["pilot_seeds"] == 2).all() and (table["committed_seeds"] == 1).all()


def test_a_shared_teacher_is_recorded_at_every_pilot_seed_so_its_students_pair_with_it(isolated, monkeypatch):
    import dataclasses
    import types

    from test_arms import KD, TEACHER, toy_data

    from kdrepro.experiment import Run
    from kdrepro.measures import Classification
    monkeypatch.delenv("KDREPRO_PROFILE", raising=False)
    teacher = dataclasses.replace(TEACHER, shared=True)
    student = dataclasses.replace(KD, teacher=teacher)
    paper = types.SimpleNamespace(
        PAPER=hinton_kd.PAPER, PROFILES={"smoke": hinton_kd.PROFILES["smoke"]}, load=lambda p: toy_data(),
        runs=lambda p: [Run(arm.at(seed), Classification()) for seed in p.seeds for arm in (teacher, student)])
    runs = pilot_runs(paper, "smoke", (100, 101))
    assert sorted(zip(runs["arm"], runs["seed"])) == [("kd", 100), ("kd", 101), ("teacher", 0), ("teacher", 100),
                                                      ("teacher", 101)]
