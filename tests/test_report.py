import json
from collections import Counter

import pytest

from kdrepro import experiments
from kdrepro.report import build_summary, claim_counts, claim_rows, count_line, departures, replace_block


def write_verdicts(folder, verdicts):
    folder.mkdir(parents=True)
    rows = [{"statement": s, "arm": "kd", "compared_with": "student", "metric": "test_error", "verdict": v,
             "arm_mean": 0.1, "compared_mean": 0.2, "mean_gain": 0.1, "p_value": 0.01, "seeds": 3}
            for s, v in verdicts]
    (folder / "claims.json").write_text(json.dumps(rows))
    (folder / "provenance.json").write_text(json.dumps({"wall_seconds": 42.0}))
    (folder / "table.csv").write_text("arm,test error %\nkd,10.00 ± 0.10\n")


def test_the_summary_counts_verdicts_and_links_each_paper(isolated):
    write_verdicts(isolated / "results" / "cpu" / "hinton_kd",
                   [("a", "reproduced"), ("b", "not reproduced"), ("c", "reproduced")])
    assert claim_counts("cpu") == {"reproduced": 2, "not reproduced": 1}
    path = build_summary("cpu")
    assert path == isolated / "results" / "README.md"
    text = path.read_text()
    assert "**2 of 3 claims reproduced**" in text
    assert "(cpu/hinton_kd/README.md) | response | offline | 2 / 3 | 42 s |" in text
    assert "| kd | 10.00 ± 0.10 |" in text


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


def test_the_count_line_names_inconclusive_and_not_reproduced_even_at_zero():
    assert count_line(Counter({"reproduced": 3, "not reproduced": 2})) == \
        "**3 of 5 claims reproduced** (0 inconclusive, 2 not reproduced)."
    assert count_line(Counter({"not evaluated": 4})) == \
        "**0 of 4 claims reproduced** (0 inconclusive, 0 not reproduced, 4 not evaluated)."


def test_each_claim_shows_our_means_in_the_metric_units_beside_the_paper_numbers(isolated):
    folder = isolated / "results" / "cpu" / "hinton_kd"
    write_verdicts(folder, [("kd beats student", "reproduced")])
    (folder / "table.csv").write_text("arm,test error %,\"paper (MNIST)\"\nkd,10.00,0.74%\nstudent,20.00,1.46%\n")
    rows = claim_rows("cpu")
    hinton = next(row for row in rows if row["paper"] == "Hinton KD")
    assert hinton["ours"] == "kd 10 vs student 20 (test error %)"          # arm_mean 0.1 and 0.2 in claims.json
    assert hinton["paper's"] == "(MNIST): kd 0.74%; student 1.46%" and hinton["verdict"] == "reproduced"
    assert next(row for row in rows if row["paper"] == "DML")["verdict"] == "not run"


def test_the_overview_figure_is_written_with_no_results_and_with_some(isolated):
    build_summary("smoke")
    figure = isolated / "results" / "smoke" / "overview.png"
    assert figure.read_bytes().startswith(b"\x89PNG")
    figure.unlink()
    folder = isolated / "results" / "smoke" / "hinton_kd"
    write_verdicts(folder, [("a", "not evaluated")])
    (folder / "runs.csv").write_text("arm,seed,test_error\nstudent,0,0.2\nkd,0,0.1\n")
    build_summary("smoke")
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert "![Gain of each method over its scratch student](overview.png)" in (figure.parent / "README.md").read_text()


def test_the_default_profile_regenerates_both_readme_blocks_and_nothing_else(isolated):
    readme = isolated / "README.md"   # beside the results folder, as the repository's is
    readme.write_text(README)
    write_verdicts(isolated / "results" / "cpu" / "hinton_kd", [("Soft targets help", "reproduced")])
    build_summary("cpu")
    text = readme.read_text()
    assert text.startswith("# title\n\nA paragraph written by hand.\n\n<!-- summary:start -->\n**1 of 1 claims")
    assert "## Two commands, by hand" in text and text.endswith("<!-- departures:end -->\n\nThe end, by hand.\n")
    assert "![Gain of each method over its scratch student](results/cpu/overview.png)" in text
    assert "| [`01_hinton_kd`](notebooks/01_hinton_kd.ipynb) | Soft targets help | reproduced |" in text
    assert "| [`06_dml`](notebooks/06_dml.ipynb) |  | not run |" in text
    for paper_id, paper in experiments.PAPERS.items():
        assert f"### {paper.title}" in text and departures(paper_id) in text
    build_summary("cpu")
    assert readme.read_text() == text


def test_a_readme_without_markers_stops_the_report_before_anything_is_written(isolated):
    (isolated / "README.md").write_text("# title\n\nno markers\n")
    with pytest.raises(ValueError, match="summary:start"):
        build_summary("cpu")
    assert not (isolated / "results" / "README.md").exists()


def test_other_profiles_leave_the_readme_alone(isolated):
    (isolated / "README.md").write_text(README)
    build_summary("smoke")
    assert (isolated / "README.md").read_text() == README
