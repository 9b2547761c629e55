"""The field at a glance: where each paper sits on the map, every claim's verdict as a forest plot, and what each
method gains over its scratch student.

The map crosses what is transferred (response / feature / relation / sequence) with how teacher and student
relate (offline / online / self), as `experiments.PAPERS` records it. The gains are paired by seed, as the claims
are: a method's seed-s run minus the scratch student's seed-s run, signed so that a positive gain is an
improvement, in the metric's own points (error and Recall@1 in percentage points, BLEU in BLEU points).
The forest plot draws each claim's gain (in the claim's favour) with its interval and its smallest effect of
interest, coloured by the verdict, never by the sign of the mean.
"""

from __future__ import annotations

import json
import os

import matplotlib.pyplot as plt
import pandas as pd

from kdrepro import experiments
from kdrepro.claims import (
    INCONCLUSIVE,
    METRICS,
    NOT_EVALUATED,
    NOT_REPRODUCED,
    NOT_TESTABLE,
    REPRODUCED,
    Verdict,
    metric,
)
from kdrepro.experiment import PROFILE_VARIABLE
from kdrepro.paper import Comparison
from kdrepro.paths import results_dir

TRANSFERRED = ("response", "feature", "relation", "sequence")
SCHEMES = ("offline", "online", "self")
NOT_RUN = "not run"  # a paper without results, in the tables and the figure
VERDICT_COLOURS = {REPRODUCED: "C2", NOT_REPRODUCED: "C3", INCONCLUSIVE: "0.5", NOT_TESTABLE: "C4",
                   NOT_EVALUATED: "0.75"}


# each paper's own declaration (its module's PAPER), gathered in notebook order
COMPARISONS: dict[str, Comparison] = {paper_id: paper.comparison for paper_id, paper in experiments.PAPERS.items()}


def resolve_profile(requested: str) -> str:
    """$KDREPRO_PROFILE when set (how nbval chooses `smoke`), else `requested`; any paper's profile will do."""
    name = os.environ.get(PROFILE_VARIABLE) or requested
    known = sorted({p for paper_id in experiments.PAPERS for p in experiments.profiles(paper_id)})
    if name not in known:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(known)}")
    return name


def map_rows() -> list[dict[str, str]]:
    """Every paper with its place on the map."""
    return [{"paper": paper.title, "notebook": paper.notebook, "transferred": paper.transferred,
             "scheme": paper.scheme} for paper in experiments.PAPERS.values()]


def map_cells() -> dict[tuple[str, str], list[str]]:
    """(transferred, scheme) -> the short names of the papers in that cell, every cell present."""
    cells: dict[tuple[str, str], list[str]] = {(t, s): [] for t in TRANSFERRED for s in SCHEMES}
    for paper_id, paper in experiments.PAPERS.items():
        if (paper.transferred, paper.scheme) not in cells:
            raise ValueError(f"{paper_id}: ({paper.transferred!r}, {paper.scheme!r}) is not on the map; "
                             f"transferred is one of {TRANSFERRED}, scheme one of {SCHEMES}")
        cells[paper.transferred, paper.scheme].append(f"{paper.notebook[:2]} {COMPARISONS[paper_id].name}")
    return cells


def plot_map() -> plt.Figure:
    """The map as a grid: rows what is transferred, columns the scheme, each paper in its cell."""
    figure, ax = plt.subplots(figsize=(7, 4.2))
    for (t, s), names in map_cells().items():
        x, y = SCHEMES.index(s), TRANSFERRED.index(t)
        ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, color="C0" if names else "0.95",
                                   alpha=0.15 + 0.15 * len(names) if names else 1))
        ax.text(x, y, "\n".join(names), ha="center", va="center", fontsize=10)
    ax.set_xticks(range(len(SCHEMES)), SCHEMES)
    ax.set_yticks(range(len(TRANSFERRED)), TRANSFERRED)
    ax.set_xticks([i + 0.5 for i in range(len(SCHEMES) - 1)], minor=True)
    ax.set_yticks([i + 0.5 for i in range(len(TRANSFERRED) - 1)], minor=True)
    ax.grid(which="minor", color="white", linewidth=3)
    ax.tick_params(which="both", length=0)
    ax.set(xlim=(-0.5, len(SCHEMES) - 0.5), ylim=(len(TRANSFERRED) - 0.5, -0.5),
           xlabel="how teacher and student relate", ylabel="what is transferred")
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    figure.tight_layout()
    return figure


def comparison_rows() -> list[dict[str, str]]:
    """Which arm is each paper's scratch student, which arms are its methods, and the metric they are read on."""
    return [{"paper": c.name, "scratch student": c.scratch, "methods": ", ".join(c.methods),
             "metric": metric(c.metric).label,
             "better": "lower" if metric(c.metric).lower_is_better else "higher"} for c in COMPARISONS.values()]


def load_verdicts(profile: str, paper_id: str) -> list[Verdict] | None:
    """A paper's verdicts from its claims.json, or None when it has not been run on this profile."""
    path = results_dir() / profile / paper_id / "claims.json"
    return [Verdict(**entry) for entry in json.loads(path.read_text())] if path.exists() else None


def all_verdicts(profile: str) -> dict[str, list[Verdict] | None]:
    return {paper_id: load_verdicts(profile, paper_id) for paper_id in COMPARISONS}


def load_runs(profile: str, paper_id: str) -> pd.DataFrame | None:
    """A paper's per-seed runs table, or None when it has not been run on this profile."""
    path = results_dir() / profile / paper_id / "runs.csv"
    return pd.read_csv(path) if path.exists() else None


def paired_gains(runs: pd.DataFrame, comparison: Comparison) -> pd.DataFrame:
    """One row per (method, seed): the method's improvement over the scratch student of the same seed, in points.

    gain = (method - scratch) * scale, negated when lower is better, so a positive gain is always an improvement.
    """
    m = METRICS[comparison.metric]  # the sign must be known, never guessed
    missing = [arm for arm in (comparison.scratch, *comparison.methods) if arm not in set(runs["arm"])]
    if missing:
        raise KeyError(f"{comparison.name}: arms {missing} are not in the runs; they have {sorted(set(runs['arm']))}")
    scratch = runs[runs["arm"] == comparison.scratch].set_index("seed")[comparison.metric]
    sign = -1 if m.lower_is_better else 1
    frames = []
    for method in comparison.methods:
        values = runs[runs["arm"] == method].set_index("seed")[comparison.metric]
        difference = (values - scratch).dropna()  # aligned on seed: only seeds both arms ran are paired
        frames.append(pd.DataFrame({"method": method, "seed": difference.index,
                                    "gain": (sign * m.scale * difference).to_numpy()}))
    return pd.concat(frames, ignore_index=True)


def all_gains(profile: str) -> dict[str, pd.DataFrame | None]:
    """Every paper's paired gains on this profile; None for a paper without results."""
    gains = {}
    for paper_id, comparison in COMPARISONS.items():
        runs = load_runs(profile, paper_id)
        gains[paper_id] = None if runs is None else paired_gains(runs, comparison)
    return gains


def summarise_gains(gains: pd.DataFrame) -> pd.DataFrame:
    """Per method, in the order drawn: mean gain, sample std over seeds (NaN for one seed), number of seeds."""
    grouped = gains.groupby("method", sort=False)["gain"]
    return pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(), "seeds": grouped.size()}).reset_index()


def gain_rows(gains: dict[str, pd.DataFrame | None]) -> list[dict[str, object]]:
    """The figure's numbers as a table: mean ± std of each method's gain, or "not run"."""
    rows: list[dict[str, object]] = []
    for paper_id, paper_gains in gains.items():
        c = COMPARISONS[paper_id]
        if paper_gains is None:
            rows.append({"paper": c.name, "method": NOT_RUN, "over": c.scratch, "gain": "", "unit": "",
                         "seeds": 0})
            continue
        for row in summarise_gains(paper_gains).itertuples():
            spread = "" if pd.isna(row.std) else f" ± {row.std:.2f}"
            rows.append({"paper": c.name, "method": row.method, "over": c.scratch,
                         "gain": f"{row.mean:+.2f}{spread}", "unit": metric(c.metric).points, "seeds": row.seeds})
    return rows


def plot_gains(gains: dict[str, pd.DataFrame | None]) -> plt.Figure:
    """One panel per paper: each method's gain over its scratch student, mean ± std and every seed as a dot (the
    verdicts, with their intervals, are the forest plot's)."""
    columns = 4
    rows = max(1, -(-len(gains) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(gains):]:
        ax.axis("off")
    for ax, (paper_id, paper_gains) in zip(axes.flat, gains.items()):
        c = COMPARISONS[paper_id]
        ax.set_title(c.name)
        if paper_gains is None:
            ax.text(0.5, 0.5, NOT_RUN, ha="center", va="center", transform=ax.transAxes, color="0.5")
            ax.set(xticks=[], yticks=[])
            continue
        _draw_gains(ax, paper_gains)
        ax.set_xlabel(f"gain over {c.scratch}\n({metric(c.metric).points})")
    figure.suptitle("Gain of each method over its scratch student (positive: better; bar: mean ± std over seeds, "
                    "dots: seeds)")
    figure.tight_layout()
    return figure


def _draw_gains(ax: plt.Axes, gains: pd.DataFrame) -> None:
    summary = summarise_gains(gains)
    for y, row in enumerate(summary.itertuples()):
        ax.errorbar(row.mean, y, xerr=0 if pd.isna(row.std) else row.std, fmt="o", ms=7, capsize=4, color="C0")
        seeds = gains[gains["method"] == row.method]["gain"]
        ax.plot(seeds, [y + 0.22] * len(seeds), "k.", ms=4)
    ax.axvline(0, color="0.4", linewidth=0.8)
    ax.set_yticks(range(len(summary)), summary["method"])
    ax.set_ylim(len(summary) - 0.5, -0.6)


def forest_panels(verdicts: dict[str, list[Verdict] | None]) -> list[tuple[str, str, list[Verdict]]]:
    """(title, x label, claims) per paper and metric, in order: a paper whose claims use two metrics gets two
    panels, as their units differ; a paper without results gets an empty one."""
    panels = []
    for paper_id, paper_verdicts in verdicts.items():
        name = COMPARISONS[paper_id].name
        if paper_verdicts is None:
            panels.append((f"{name}: {NOT_RUN}", "", []))
            continue
        for metric_name in dict.fromkeys(v.metric for v in paper_verdicts):
            m = metric(metric_name)
            panels.append((f"{name}: {m.points}", m.points, [v for v in paper_verdicts if v.metric == metric_name]))
    return panels


def sesoi_marks(v: Verdict) -> list[float]:
    """Where a claim's SESOI is drawn on its gain's axis: ±margin for "alike", one mark otherwise."""
    return [-v.sesoi, v.sesoi] if v.kind == "alike" else [v.sesoi]


def plot_forest(verdicts: dict[str, list[Verdict] | None]) -> plt.Figure:
    """Every claim: its gain (alike: its difference) in the metric's points with the interval between its one-sided
    95% bounds, its SESOI as a black bar, coloured by the verdict; a panel per paper and metric."""
    panels = forest_panels(verdicts)
    heights = [max(1, len(claims)) + 1.2 for _, _, claims in panels]
    figure, axes = plt.subplots(len(panels), 1, figsize=(10, 0.32 * sum(heights) + 1),
                                gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (title, label, claims) in zip(axes[:, 0], panels):
        ax.set_title(title, loc="left", fontsize=9)
        if not claims:
            ax.set(xticks=[], yticks=[])
            continue
        _draw_forest(ax, claims)
        ax.set_xlabel(label, fontsize=8)
    handles = [plt.Line2D([], [], color=c, marker="o", label=v) for v, c in VERDICT_COLOURS.items()]
    handles.append(plt.Line2D([], [], color="k", marker="|", linestyle="", ms=12, label="SESOI (margin)"))
    figure.tight_layout(rect=(0, 0, 1, 0.975))
    figure.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.975), ncol=len(handles), fontsize=8,
                  frameon=False)
    figure.suptitle("Every claim: gain in its favour, 90% interval (the one-sided 95% bounds), coloured by verdict",
                    y=1.0, fontsize=10)
    return figure


def _draw_forest(ax: plt.Axes, claims: list[Verdict]) -> None:
    for y, v in enumerate(claims):
        scale, colour = metric(v.metric).scale, VERDICT_COLOURS.get(v.verdict, "0.5")
        ax.plot([v.gain_lower_bound * scale, v.gain_upper_bound * scale], [y, y], color=colour, linewidth=2.5)
        ax.plot(v.gain * scale, y, "o", color=colour, ms=6)
        ax.plot([mark * scale for mark in sesoi_marks(v)], [y] * len(sesoi_marks(v)), "k|", ms=12, mew=2)
    ax.axvline(0, color="0.4", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(claims)), [_short(v.statement) for v in claims], fontsize=7)
    ax.set_ylim(len(claims) - 0.5, -0.5)
    ax.tick_params(axis="x", labelsize=7)


def _short(statement: str, width: int = 70) -> str:
    return statement if len(statement) <= width else statement[:width - 1] + "…"
