"""`python -m kdrepro compare`: the verdicts two runs of one protocol disagree on, claim by claim."""

import json

import pytest

from kdrepro import cli
from kdrepro.compare import verdict_differences


def publish(folder, paper, claims):
    (folder / paper).mkdir(parents=True)
    (folder / paper / "claims.json").write_text(json.dumps(
        [{"statement": s, "verdict": v, "gain": g, "p_adjusted": p} for s, v, g, p in claims]))


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
    assert rows[1]["gain"] == 0.001 and rows[1]["other p adjusted"] == 0.04


def test_the_command_prints_them_and_refuses_a_folder_that_is_not_there(two_runs, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("KDREPRO_RESULTS", str(tmp_path / "ours"))
    cli.main(["compare", str(tmp_path / "theirs"), "--profile", "cpu"])
    out = capsys.readouterr().out
    assert "T3 beats T1\n    inconclusive (gain 0.001, p adj 0.3) -> reproduced" in out
    assert out.endswith("2 verdict(s) differ; 2 claims published in both "
                        f"{tmp_path / 'ours' / 'cpu'} and {tmp_path / 'theirs' / 'cpu'}\n")
    with pytest.raises(SystemExit, match="nowhere/cpu is not a folder of results"):
        cli.main(["compare", str(tmp_path / "nowhere"), "--profile", "cpu"])
