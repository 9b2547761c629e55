import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from kdrepro import experiments, overview
from kdrepro.overview import all_gains, paired_gains, plot_gains, summarise_gains
from kdrepro.paper import Comparison
from kdrepro.paths import REPO_ROOT


def runs_table(metric, values):
    """A runs table from {arm: [value at seed 0, value at seed 1, ...]}."""
    return pd.DataFrame([{"arm": arm, "seed": seed, metric: value}
                         for arm, per_seed in values.items() for seed, value in enumerate(per_seed)])


def gains_of(gains, method):
    return gains[gains["method"] == method].set_index("seed")["gain"].to_dict()


def test_an_error_that_falls_is_a_positive_gain_in_percentage_points():
    runs = runs_table("test_error", {"student": [0.20, 0.30], "kd": [0.15, 0.31]})
    gains = paired_gains(runs, Comparison("x", "student", ("kd",), "test_error"))
    # seed 0: (0.20 - 0.15) * 100 = +5 points better; seed 1: (0.30 - 0.31) * 100 = -1
    assert gains_of(gains, "kd") == pytest.approx({0: 5.0, 1: -1.0})


def test_a_recall_that_rises_is_a_positive_gain_in_percentage_points():
    runs = runs_table("recall_at_1", {"triplet": [0.60, 0.70], "rkd_da": [0.65, 0.68]})
    gains = paired_gains(runs, Comparison("x", "triplet", ("rkd_da",), "recall_at_1"))
    assert gains_of(gains, "rkd_da") == pytest.approx({0: 5.0, 1: -2.0})


def test_bleu_gains_stay_in_bleu_points():
    runs = runs_table("bleu", {"baseline/greedy": [30.0, 32.0], "seq_kd/greedy": [40.0, 31.5]})
    gains = paired_gains(runs, Comparison("x", "baseline/greedy", ("seq_kd/greedy",), "bleu"))
    assert gains_of(gains, "seq_kd/greedy") == pytest.approx({0: 10.0, 1: -0.5})


def test_gains_pair_runs_by_seed_and_leave_out_a_seed_one_arm_lacks():
    rows = [("kd", 2, 0.10), ("student", 0, 0.50), ("student", 2, 0.13), ("student", 1, 0.20), ("kd", 1, 0.25)]
    runs = pd.DataFrame(rows, columns=["arm", "seed", "test_error"])
    gains = paired_gains(runs, Comparison("x", "student", ("kd",), "test_error"))
    assert gains_of(gains, "kd") == pytest.approx({1: -5.0, 2: 3.0})


def test_a_comparison_naming_an_arm_the_runs_lack_says_which():
    runs = runs_table("test_error", {"student": [0.2], "kd": [0.1]})
    with pytest.raises(KeyError, match=r"\['fitnet'\] are not in the runs"):
        paired_gains(runs, Comparison("x", "student", ("kd", "fitnet"), "test_error"))


def test_the_summary_of_gains_keeps_the_methods_order_with_mean_sample_std_and_seeds():
    gains = pd.DataFrame({"method": ["b", "b", "b", "a"], "seed": [0, 1, 2, 0], "gain": [1.0, 2.0, 6.0, -4.0]})
    summary = summarise_gains(gains).set_index("method")
    assert list(summary.index) == ["b", "a"]
    # b: mean 3, deviations -2, -1, 3: variance (4 + 1 + 9) / 2 = 7
    assert summary.loc["b", "mean"] == pytest.approx(3.0) and summary.loc["b", "std"] == pytest.approx(math.sqrt(7))
    assert summary.loc["a", "seeds"] == 1 and math.isnan(summary.loc["a", "std"])


def test_every_paper_has_a_comparison_on_a_metric_of_known_direction():
    assert set(overview.COMPARISONS) == set(experiments.PAPERS)
    assert all(c.metric in overview.METRICS for c in overview.COMPARISONS.values())


@pytest.mark.parametrize("paper_id", list(overview.COMPARISONS))
def test_each_comparison_names_arms_and_a_metric_of_the_committed_runs(paper_id):
    path = REPO_ROOT / "results" / "cpu" / paper_id / "runs.csv"
    if not path.exists():
        pytest.skip(f"no committed results for {paper_id}")
    runs, comparison = pd.read_csv(path), overview.COMPARISONS[paper_id]
    assert {comparison.scratch, *comparison.methods} <= set(runs["arm"]) and comparison.metric in runs.columns


def test_every_paper_sits_in_exactly_one_cell_of_the_map():
    cells = overview.map_cells()
    assert len(cells) == len(overview.TRANSFERRED) * len(overview.SCHEMES)
    assert sum(len(names) for names in cells.values()) == len(experiments.PAPERS)
    assert "06 DML" in cells["response", "online"] and "07 BAN" in cells["response", "self"]


def test_the_profile_variable_overrides_the_parameter_and_an_unknown_profile_is_named(monkeypatch):
    monkeypatch.setenv("KDREPRO_PROFILE", "smoke")
    assert overview.resolve_profile("cpu") == "smoke"
    monkeypatch.delenv("KDREPRO_PROFILE")
    with pytest.raises(ValueError, match="unknown profile 'gpu'; choose one of"):
        overview.resolve_profile("gpu")


def panel_texts(figure):
    return [text.get_text() for ax in figure.axes for text in ax.texts]


def test_the_figure_is_drawn_when_no_paper_has_results(isolated):
    gains = all_gains("smoke")
    assert all(g is None for g in gains.values())
    figure = plot_gains(gains)
    assert panel_texts(figure).count("not run") == len(experiments.PAPERS)
    plt.close(figure)


def test_the_figure_draws_the_papers_with_results_and_marks_the_others_not_run(isolated):
    folder = isolated / "results" / "smoke" / "hinton_kd"
    folder.mkdir(parents=True)
    runs_table("test_error", {"student": [0.2, 0.3], "kd": [0.1, 0.2]}).to_csv(folder / "runs.csv", index=False)
    gains = all_gains("smoke")
    assert gains_of(gains["hinton_kd"], "kd") == pytest.approx({0: 10.0, 1: 10.0})
    figure = plot_gains(gains)
    assert panel_texts(figure).count("not run") == len(experiments.PAPERS) - 1
    hinton = next(ax for ax in figure.axes if ax.get_title() == "Hinton KD")
    assert [label.get_text() for label in hinton.get_yticklabels()] == ["kd"]
    assert "test error, % points" in hinton.get_xlabel()
    plt.close(figure)


def verdict(statement, verdict="reproduced", metric="test_error", kind="beats", **numbers):
    from kdrepro.claims import Verdict
    fields = {"gain": 0.02, "gain_lower_bound": 0.01, "gain_upper_bound": 0.03, "sesoi": 0.005, **numbers}
    return Verdict(statement, kind, "kd", "student", metric, verdict, 0.1, 0.12, sesoi_reason="", mde=0.01,
                   seeds_needed=3, p_value=0.01, p_adjusted=0.01, seeds=3, preconditions=[], notes=[], **fields)


def test_the_forest_plot_has_a_panel_per_paper_and_metric_and_colours_by_verdict_not_by_sign():
    from matplotlib.colors import to_rgba
    claims = [verdict("up", "not reproduced"), verdict("loss", metric="noise_loss_rise"),
              verdict("down", "inconclusive", gain=-0.01, gain_lower_bound=-0.02, gain_upper_bound=0.0)]
    panels = overview.forest_panels({"dml": claims, "fsp": None})
    assert [(title, [v.statement for v in vs]) for title, _, vs in panels] == [
        ("DML: test error, % points", ["up", "down"]), ("DML: loss rise", ["loss"]), ("FSP: not run", [])]
    figure = overview.plot_forest({"dml": claims, "fsp": None})
    errors = figure.axes[0]
    # each claim: its interval (a line), its gain (a dot), its SESOI (a black bar), in points
    interval, dot, _, down_interval = errors.lines[:4]
    assert list(interval.get_xdata()) == pytest.approx([1.0, 3.0]) and list(dot.get_xdata()) == pytest.approx([2.0])
    assert to_rgba(interval.get_color()) == to_rgba(overview.VERDICT_COLOURS["not reproduced"])
    assert to_rgba(down_interval.get_color()) == to_rgba(overview.VERDICT_COLOURS["inconclusive"])
    plt.close(figure)


def test_an_alike_claim_draws_its_margin_on_both_sides_and_approaches_at_minus_the_margin():
    assert overview.sesoi_marks(verdict("alike", kind="alike", sesoi=0.005)) == [-0.005, 0.005]
    assert overview.sesoi_marks(verdict("within", kind="approaches", sesoi=-0.01)) == [-0.01]
