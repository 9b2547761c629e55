import json

from kdrepro.report import build_summary, claim_counts


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
