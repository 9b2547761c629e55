import json
import math
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import pandas as pd
import pytest

from kdrepro import experiments
from kdrepro.claims import Claim, Verdict, judge
from kdrepro.report import (
    build_summary,
    claim_counts,
    claim_rows,
    count_line,
    departures,
    fdr_line,
    paper_time,
    rejudge,
    replace_block,
    replace_section,
)

VERDICT = Verdict(statement="", kind="beats", arm="kd", compared_with="student", metric="test_error", verdict="",
                  arm_mean=0.1, compared_mean=0.2, gain=0.1, gain_lower_bound=0.05, gain_upper_bound=0.15,
                  sesoi=0.01, sesoi_reason="the default", mde=0.02, seeds_needed=3, p_value=0.01, p_adjusted=0.01,
                  seeds=3, preconditions=[], notes=[])


def write_verdicts(folder, verdicts):
    folder.mkdir(parents=True)
    rows = [replace(VERDICT, statement=s, verdict=v).as_dict() for s, v in verdicts]
    (folder / "claims.json").write_text(json.dumps(rows))
    (folder / "provenance.json").write_text(json.dumps({"wall_seconds": 42.0}))
    (folder / "table.csv").write_text("arm,test error %\nkd,10.00 ± 0.10\n")


def test_the_summary_counts_the_four_verdicts_and_links_each_paper(isolated):
    write_verdicts(isolated / "results" / "cpu" / "hinton_kd",
                   [("a", "reproduced"), ("b", "not reproduced"), ("c", "reproduced"), ("d", "not testable here")])
    assert claim_counts("cpu") == {"reproduced": 2, "not reproduced": 1, "not testable here": 1}
    path = build_summary("cpu")
    assert path == isolated / "results" / "README.md"
    text = path.read_text()
    assert "**2 of 4 claims reproduced** (1 not reproduced, 0 inconclusive, 1 not testable here)." in text
    assert "(cpu/hinton_kd/README.md) | response | offline | 2 / 1 / 0 / 1 | 42 s |" in text
    assert "| kd | 10.00 ± 0.10 |" in text


def test_a_papers_time_puts_the_workers_training_before_its_notebooks_own(isolated):
    write_verdicts(isolated / "results" / "cpu" / "hinton_kd", [("a", "reproduced")])
    reproduce = isolated / "results" / "cpu" / "reproduce.json"
    assert paper_time("cpu", "hinton_kd") == "42 s"          # no reproduce: the notebook trained its runs itself
    reproduce.write_text(json.dumps({"papers": {"hinton_kd": {"runs_seconds": 347.4, "render_seconds": 42.0}}}))
    assert paper_time("cpu", "hinton_kd") == "347 s of training (workers) + 42 s notebook"
    reproduce.write_text(json.dumps({"papers": {"hinton_kd": {"runs_seconds": 347.4, "render_seconds": 9.0}}}))
    assert paper_time("cpu", "hinton_kd") == "42 s"          # the record is of another render


def test_other_profiles_get_their_own_summary_and_missing_papers_say_not_run(isolated):
    path = build_summary("smoke")
    assert path == isolated / "results" / "smoke" / "README.md"
    assert "| not run |" in path.read_text() and "**0 of 0 claims reproduced**" in path.read_text()


README = """# title

A paragraph written by hand.

<!-- summary:start -->
stale summary
<!-- summary:end -->

## Two commands, by hand

<!-- departures:start -->
<!-- departures:end -->

The end, by hand.
"""


def test_a_block_is_replaced_between_its_markers_and_the_rest_is_kept():
    text = replace_block(README, "summary", "fresh\nsummary")
    assert "<!-- summary:start -->\nfresh\nsummary\n<!-- summary:end -->" in text
    assert "stale" not in text
    assert text.replace("fresh\nsummary", "stale summary") == README


def test_replacing_a_block_twice_gives_the_same_text():
    once = replace_block(README, "departures", "- one\n- two")
    assert replace_block(once, "departures", "- one\n- two") == once


@pytest.mark.parametrize("text", ["no markers at all", "<!-- summary:start -->\nonly a start",
                                  "<!-- summary:end -->\n<!-- summary:start -->",
                                  "<!-- summary:start -->\n<!-- summary:end -->\n<!-- summary:start -->"])
def test_missing_or_misplaced_markers_are_a_clear_error(text):
    with pytest.raises(ValueError, match="expected one <!-- summary:start --> followed by one <!-- summary:end -->"):
        replace_block(text, "summary", "x")


def test_the_count_line_names_every_verdict_even_at_zero():
    assert count_line(Counter({"reproduced": 3, "not reproduced": 2})) == \
        "**3 of 5 claims reproduced** (2 not reproduced, 0 inconclusive, 0 not testable here)."
    assert count_line(Counter({"not evaluated": 4})) == \
        "**0 of 4 claims reproduced** (0 not reproduced, 0 inconclusive, 0 not testable here, 4 not evaluated)."


def test_reproductions_are_counted_again_under_benjamini_hochberg_over_the_claims_tested():
    # raw p 0.01, 0.04, 0.03, 0.005 -> BH 0.02, 0.04, 0.04, 0.02: the reproduction at 0.04 survives, untested
    # claims (adjusted p NaN) are not in the family
    verdicts = [replace(VERDICT, verdict="reproduced", p_value=p) for p in (0.01, 0.04, 0.03, 0.005)]
    verdicts.append(replace(VERDICT, verdict="not testable here", p_value=0.001, p_adjusted=math.nan))
    assert fdr_line(verdicts) == ("4 of the 4 reproductions survive Benjamini-Hochberg at 0.05 over all 4 claims "
                                  "tested in the profile.")
    verdicts.append(replace(VERDICT, verdict="inconclusive", p_value=0.9))
    # five tested: 0.005, 0.01, 0.03, 0.04, 0.9 x 5/1..5/5 = 0.025, 0.025, 0.05, 0.05, 0.9: two survive below 0.05
    assert fdr_line(verdicts).startswith("2 of the 4 reproductions survive")


def test_each_claim_shows_our_means_in_the_metric_units_beside_the_paper_numbers(isolated):
    folder = isolated / "results" / "cpu" / "hinton_kd"
    write_verdicts(folder, [("kd beats student", "reproduced")])
    (folder / "table.csv").write_text("arm,test error %,\"paper (MNIST)\"\nkd,10.00,0.74%\nstudent,20.00,1.46%\n")
    rows = claim_rows("cpu")
    hinton = next(row for row in rows if row["paper"] == "Hinton KD")
    assert hinton["ours"] == "kd 10 vs student 20 (test error %)"          # arm_mean 0.1 and 0.2 in claims.json
    assert hinton["paper's"] == "(MNIST): kd 0.74%; student 1.46%" and hinton["verdict"] == "reproduced"
    assert hinton["gain [95% bounds]"] == "+10.00 [+5.00, +15.00]" and hinton["SESOI"] == "+1.00"
    assert next(row for row in rows if row["paper"] == "DML")["verdict"] == "not run"


def test_the_forest_plot_is_written_with_no_results_and_with_some(isolated):
    build_summary("smoke")
    figure = isolated / "results" / "smoke" / "overview.png"
    assert figure.read_bytes().startswith(b"\x89PNG")
    figure.unlink()
    write_verdicts(isolated / "results" / "smoke" / "hinton_kd", [("a", "not evaluated")])
    build_summary("smoke")
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert "(overview.png)" in (figure.parent / "README.md").read_text()


def test_the_default_profile_regenerates_both_readme_blocks_and_nothing_else(isolated):
    readme = isolated / "README.md"   # beside the results folder, as the repository's is
    readme.write_text(README)
    write_verdicts(isolated / "results" / "cpu" / "hinton_kd", [("Soft targets help", "reproduced")])
    build_summary("cpu")
    text = readme.read_text()
    assert text.startswith("# title\n\nA paragraph written by hand.\n\n<!-- summary:start -->\n**1 of 1 claims")
    assert "## Two commands, by hand" in text and text.endswith("<!-- departures:end -->\n\nThe end, by hand.\n")
    assert "(results/cpu/overview.png)" in text
    assert ("| [`01_hinton_kd`](notebooks/01_hinton_kd.ipynb) | Soft targets help | +10.00 [+5.00, +15.00] | +1.00 "
            "| test error, % points | reproduced |") in text
    assert "| [`06_dml`](notebooks/06_dml.ipynb) |  |  |  |  | not run |" in text
    for paper_id, paper in experiments.PAPERS.items():
        assert f"### {paper.title}" in text and departures(paper_id) in text
    build_summary("cpu")
    assert readme.read_text() == text


PAPER_README = """# A paper

## Results

| arm | error |
|---|---|
| kd | 40 |

## Claims

| claim | old columns |
|---|---|
| kd beats student | +0.1 |

![arms](figures/arms.png)

## Departures from the paper

- kept as it is
"""


def test_a_section_is_replaced_up_to_the_next_heading_or_figure():
    text = replace_section(PAPER_README, "## Claims", "new\n")
    assert "## Claims\n\nnew\n\n![arms](figures/arms.png)" in text and "old columns" not in text
    assert text.replace("new", "| claim | old columns |\n|---|---|\n| kd beats student | +0.1 |") == PAPER_README
    with pytest.raises(ValueError, match="no '## Verdicts' line"):
        replace_section(PAPER_README, "## Verdicts", "x")


def test_make_report_judges_the_published_runs_again_and_flags_a_diverged_run(isolated, monkeypatch):
    claims = [Claim("kd beats student", better="kd", worse="student")]
    monkeypatch.setattr(experiments, "module", lambda paper_id: SimpleNamespace(CLAIMS=claims))
    folder = isolated / "results" / "cpu" / "fitnets"
    folder.mkdir(parents=True)
    runs = "arm,seed,test_error,parameters\nkd,0,0.15,14186\nkd,1,0.9,14186\nkd,2,0.15,14186\n" \
           "student,0,0.2,\nstudent,1,0.2,\nstudent,2,0.2,\n"
    (folder / "runs.csv").write_text(runs)
    (folder / "table.csv").write_text("arm,error\nkd,40\nstudent,20\n")
    (folder / "README.md").write_text(PAPER_README)
    verdicts = rejudge("cpu", "fitnets")
    assert verdicts == [judge(claims[0], pd.read_csv(folder / "runs.csv"))]
    assert json.loads((folder / "claims.json").read_text())[0]["verdict"] == verdicts[0].verdict
    # runs.csv gains its diverged column and is otherwise written back as it was (no 14186.0, no NaN)
    assert (folder / "runs.csv").read_text().splitlines()[:3] == [
        "arm,seed,test_error,parameters,diverged", "kd,0,0.15,14186,False", "kd,1,0.9,14186,True"]
    assert (folder / "table.csv").read_text() == "arm,error,diverged\nkd,40,seed 1\nstudent,20,\n"
    text = (folder / "README.md").read_text()
    assert "| kd | 40 | seed 1 |" in text and "diverged, kept in the test: kd seed 1" in text
    assert "### Discussion" in text and text.endswith("## Departures from the paper\n\n- kept as it is\n")
    assert rejudge("cpu", "fitnets") == verdicts and (folder / "README.md").read_text() == text


def published_results(folder, runs_csv: str, statement: str) -> str:
    """A paper's results as a run published them: runs.csv and a claims.json with one reproduced claim."""
    folder.mkdir(parents=True)
    (folder / "runs.csv").write_text(runs_csv)
    published = json.dumps([{"statement": statement, "verdict": "reproduced"}])
    (folder / "claims.json").write_text(published)
    return published


def test_runs_that_predate_a_claims_arm_keep_their_verdicts_and_say_what_to_run(isolated, monkeypatch, capsys):
    claims = [Claim("kd beats a random teacher's student", better="kd", worse="kd_random")]
    monkeypatch.setattr(experiments, "module", lambda paper_id: SimpleNamespace(CLAIMS=claims))
    folder = isolated / "results" / "cpu" / "hinton_kd"
    published = published_results(folder, "arm,seed,test_error\nkd,0,0.15\nstudent,0,0.2\n", claims[0].statement)
    assert rejudge("cpu", "hinton_kd") is None
    assert (folder / "claims.json").read_text() == published
    assert "make reproduce PAPERS=hinton_kd PROFILE=cpu" in capsys.readouterr().err


def test_runs_published_with_other_claims_are_not_judged_by_todays(isolated, monkeypatch, capsys):
    claims = [Claim("kd beats the student", better="kd", worse="student")]
    monkeypatch.setattr(experiments, "module", lambda paper_id: SimpleNamespace(CLAIMS=claims))
    folder = isolated / "results" / "cpu" / "fsp"
    published = published_results(folder, "arm,seed,test_error\nkd,0,0.15\nkd,1,0.1\nstudent,0,0.2\nstudent,1,0.2\n",
                                  "kd beats the student in a third of the updates")
    assert rejudge("cpu", "fsp") is None and (folder / "claims.json").read_text() == published
    assert "the paper's claims changed since they were published" in capsys.readouterr().err
