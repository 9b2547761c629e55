"""`python -m kdrepro compare`: the verdicts two runs of one protocol disagree on, claim by claim."""

import json

import pytest

from kdrepro import cli
from kdrepro.compare import judged, verdict_differences


def publish(folder, paper, claims):
    (folder / paper).mkdir(parents=True)
    (folder / paper / "claims.json").write_text(json.dumps(
        [{"statement": s, "verdict": v, "metric": "test_error", "gain": g, "p_adjusted": p} for s, v, g, p in claims]))


@pytest.fixture
def two_runs(tmp_path):
    ours, theirs = tmp_path / "ours" / "cpu", tmp_path / "theirs" / "cpu"
    publish(ours, "hinton_kd", [("kd beats student", "reproduced", 0.01, 0.01), ("T3 beats T1", "inconclusive",
                                                                                0.001, 0.3)])
    publish(theirs, "hinton_kd", [("kd beats student", "reproduced", 0.012, 0.02), ("T3 beats T1", "reproduced",
                                                                                  0.002, 0.04)])
    publish(ours, "fsp", [("fsp beats student", "not reproduced", -0.01, 1.0)])
    return ours, theirs


def test_only_the_claims_whose_verdicts_differ_are_listed_and_a_claim_one_run_lacks_is_absent(two_runs):
    both, rows = verdict_differences(*two_runs)
    assert both == 2
    assert [(r["paper"], r["claim"], r["verdict"], r["other verdict"]) for r in rows] == [
        ("fsp", "fsp beats student", "not reproduced", "absent"),
        ("hinton_kd", "T3 beats T1", "inconclusive", "reproduced")]
    assert rows[1]["judged"] == "inconclusive: +0.10 [n/a, n/a] test error, % points, SESOI n/a, p adj 0.3"
    assert not rows[1]["precondition failed"]


def test_the_command_prints_them_and_refuses_a_folder_that_is_not_there(two_runs, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("KDREPRO_RESULTS", str(tmp_path / "ours"))
    cli.main(["compare", str(tmp_path / "theirs"), "--profile", "cpu"])
    out = capsys.readouterr().out
    assert ("T3 beats T1\n    inconclusive: +0.10 [n/a, n/a] test error, % points, SESOI n/a, p adj 0.3\n"
            " -> reproduced: +0.20 [n/a, n/a] test error, % points, SESOI n/a, p adj 0.04\n") in out
    assert out.endswith("2 verdict(s) differ (0 of them where a precondition failed in one run); 2 claims published "
                        f"in both {tmp_path / 'ours' / 'cpu'} and {tmp_path / 'theirs' / 'cpu'}\n")
    with pytest.raises(SystemExit, match="nowhere/cpu is not a folder of results"):
        cli.main(["compare", str(tmp_path / "nowhere"), "--profile", "cpu"])


def test_a_verdict_is_shown_in_the_metrics_points_with_its_bounds_sesoi_and_failed_preconditions():
    claim = {"verdict": "not testable here", "metric": "test_error", "gain": 0.0125, "gain_lower_bound": -0.002,
             "gain_upper_bound": 0.027, "sesoi": 0.01, "p_adjusted": 0.012345,
             "preconditions": [{"precondition": "teacher leads student by at least 5% of student's mean",
                                "passed": False, "lead": 0.004, "needed": 0.0105},
                               {"precondition": "teacher fits its training set", "passed": True, "lead": 0.01,
                                "needed": 0.0}]}
    assert judged(claim) == (
        "not testable here: +1.25 [-0.20, +2.70] test error, % points, SESOI 1.00, p adj 0.0123; "
        "failed: teacher leads student by at least 5% of student's mean (lead +0.40, needed +1.05)")
    assert judged({}) == "absent"
