"""The summary report: every paper's claims and numbers for one profile, gathered from results/.

For the default profile it also regenerates two blocks of the top-level README.md, each between marker comments:
the claim count, the overview figure and every claim's verdict; and every paper's departures in one place.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from kdrepro import experiments, overview
from kdrepro.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Verdict
from kdrepro.experiment import verdict_rows
from kdrepro.overview import NOT_RUN
from kdrepro.paths import results_dir
from kdrepro.results import atomic_write_bytes, atomic_write_text, markdown_table

DEFAULT_PROFILE = "cpu"


def summary_path(profile: str) -> Path:
    """results/README.md for the default profile (the committed results), results/<profile>/README.md otherwise."""
    return results_dir() / ("README.md" if profile == DEFAULT_PROFILE else f"{profile}/README.md")


def overview_path(profile: str) -> Path:
    return results_dir() / profile / "overview.png"


def readme_path() -> Path:
    """The README beside the results folder: the repository's own, unless KDREPRO_RESULTS moved the results."""
    return results_dir().parent / "README.md"


def load_verdicts(profile: str, paper_id: str) -> list[Verdict] | None:
    path = results_dir() / profile / paper_id / "claims.json"
    if not path.exists():
        return None
    return [Verdict(**entry) for entry in json.loads(path.read_text())]


def load_provenance(profile: str, paper_id: str) -> dict | None:
    """The paper's provenance record (wall time, threads, commit...) from its last run; None if never run."""
    path = results_dir() / profile / paper_id / "provenance.json"
    return json.loads(path.read_text()) if path.exists() else None


def claim_counts(profile: str) -> Counter:
    """How many claims got each verdict, over every paper with results."""
    return Counter(v.verdict for paper_id in experiments.PAPERS for v in (load_verdicts(profile, paper_id) or []))


def count_line(counts: Counter) -> str:
    """'**N of M claims reproduced** (i inconclusive, n not reproduced)', the smoke profile's 'not evaluated' too."""
    tested = sum(counts.values())
    if not tested:
        return "**0 of 0 claims reproduced** (no results yet)."
    others = [INCONCLUSIVE, NOT_REPRODUCED] + [v for v in counts if v not in (REPRODUCED, INCONCLUSIVE, NOT_REPRODUCED)]
    return f"**{counts[REPRODUCED]} of {tested} claims reproduced** ({', '.join(f'{counts[v]} {v}' for v in others)})."


def paper_numbers(profile: str, paper_id: str) -> tuple[str, dict[str, str]]:
    """The paper's numbers from the table's "paper ..." column: the column's context (e.g. "(MNIST, Table 4)")
    and arm -> number; empty when the table has no such column."""
    path = results_dir() / profile / paper_id / "table.csv"
    if not path.exists():
        return "", {}
    table = pd.read_csv(path, dtype=str).fillna("")
    column = next((c for c in table.columns if c.lower().startswith("paper")), None)
    if column is None or "arm" not in table.columns:
        return "", {}
    return column[len("paper"):].strip(" :"), dict(zip(table["arm"], table[column]))


def _paper_number(numbers: dict[str, str], arm: str) -> str:
    # decoded variants ("seq_kd/greedy") share their model's row ("seq_kd")
    return numbers.get(arm) or numbers.get(arm.split("/")[0]) or "-"


def _ours(v: Verdict) -> str:
    m = overview.metric(v.metric)
    return f"{v.arm} {v.arm_mean * m.scale:.4g} vs {v.compared_with} {v.compared_mean * m.scale:.4g} ({m.label})"


def claim_rows(profile: str) -> list[dict[str, object]]:
    """Every claim of every paper: our means beside the paper's numbers, and the verdict; "not run" papers too."""
    rows: list[dict[str, object]] = []
    for paper_id in experiments.PAPERS:
        name = overview.COMPARISONS[paper_id].name
        verdicts = load_verdicts(profile, paper_id)
        if verdicts is None:
            rows.append({"paper": name, "claim": "", "ours": "", "paper's": "", "seeds": 0, "verdict": NOT_RUN})
            continue
        context, numbers = paper_numbers(profile, paper_id)
        for v in verdicts:
            theirs = (f"{v.arm} {_paper_number(numbers, v.arm)}; "
                      f"{v.compared_with} {_paper_number(numbers, v.compared_with)}")
            rows.append({"paper": name, "claim": v.statement, "ours": _ours(v),
                         "paper's": f"{context}: {theirs}" if context else theirs, "seeds": v.seeds,
                         "verdict": v.verdict})
    return rows


def readme_claim_rows(profile: str) -> list[dict[str, object]]:
    """The short form for the README: notebook (named once per paper), claim, verdict."""
    rows = []
    for paper_id, paper in experiments.PAPERS.items():
        link = f"[`{paper.notebook.removesuffix('.ipynb')}`](notebooks/{paper.notebook})"
        for i, v in enumerate(load_verdicts(profile, paper_id) or [None]):
            rows.append({"notebook": link if i == 0 else "", "claim": v.statement if v else "",
                         "verdict": v.verdict if v else NOT_RUN})
    return rows


def departures(paper_id: str) -> str:
    """Where a paper's reproduction departs from it: the DEPARTURES its module publishes, which its notebook shows
    and passes to `Experiment.save` for the paper's results README."""
    return experiments.module(paper_id).DEPARTURES.strip()


def write_figure(path: Path, figure: plt.Figure) -> None:
    """Save atomically, then close: a report run draws one figure per profile and should not keep them."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def summary_block(profile: str) -> str:
    """The README's opening block: the count, the overview figure and every claim's verdict."""
    # links from the README, which sits beside the results folder
    figure = f"{results_dir().name}/{overview_path(profile).relative_to(results_dir()).as_posix()}"
    summary = f"{results_dir().name}/{summary_path(profile).relative_to(results_dir()).as_posix()}"
    return "\n".join([
        f"{count_line(claim_counts(profile))} Profile `{profile}`; each claim is tested over seeds by a paired "
        "test (p < 0.05). Every claim with our numbers beside the paper's: "
        "[`00_overview`](notebooks/00_overview.ipynb); every table, with its protocol and provenance: "
        f"[`{summary}`]({summary}).", "",
        f"![Gain of each method over its scratch student]({figure})", "",
        markdown_table(readme_claim_rows(profile)).rstrip()])


def departures_block() -> str:
    """Every paper's departures, under its title, as its notebook states them."""
    sections = []
    for paper_id, paper in experiments.PAPERS.items():
        sections += [f"### {paper.title}", f"[`{paper.notebook}`](notebooks/{paper.notebook})", "",
                     departures(paper_id), ""]
    return "\n".join(sections).rstrip()


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_block(text: str, name: str, content: str) -> str:
    """`text` with what lies between the `name` markers replaced by `content`; the rest is kept as it is."""
    start, end = markers(name)
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"expected one {start} followed by one {end} in the README, to mark the block that the "
                         f"report regenerates; add them where the block belongs")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{content}\n{end}{tail}"


def updated_readme(text: str, profile: str) -> str:
    return replace_block(replace_block(text, "summary", summary_block(profile)), "departures", departures_block())


def summary_text(profile: str) -> str:
    """The profile's summary: the count, the overview figure, a line per paper, then each paper's tables."""
    figure = overview_path(profile).relative_to(summary_path(profile).parent).as_posix()
    lines = [f"# kdrepro results: profile `{profile}`", "",
             "Regenerated by `make reproduce` (never edited by hand). Each verdict comes from paired tests over "
             "seeds, p < 0.05: a one-sided t-test for \"beats\", the same against a stated margin for \"approaches "
             "or beats\", two one-sided tests against a stated margin for \"alike\". Each paper's folder has the "
             "protocol, figures and provenance.", "",
             count_line(claim_counts(profile)), "",
             f"![Gain of each method over its scratch student]({figure})", "",
             "| paper | transferred | scheme | claims reproduced | wall time |", "|---|---|---|---|---|"]
    sections = []
    for paper_id, paper in experiments.PAPERS.items():
        verdicts = load_verdicts(profile, paper_id)
        folder = results_dir() / profile / paper_id
        if verdicts is None:
            lines.append(f"| {paper.title} | {paper.transferred} | {paper.scheme} | {NOT_RUN} | |")
            continue
        seconds = load_provenance(profile, paper_id)["wall_seconds"]
        link = folder.relative_to(summary_path(profile).parent).as_posix()
        reproduced = sum(v.verdict == REPRODUCED for v in verdicts)
        lines.append(f"| [{paper.title}]({link}/README.md) | {paper.transferred} | {paper.scheme} | "
                     f"{reproduced} / {len(verdicts)} | {seconds:.0f} s |")
        table = pd.read_csv(folder / "table.csv").fillna("").to_dict("records")
        sections += [f"## {paper.title}", "", markdown_table(table), markdown_table(verdict_rows(verdicts))]
    return "\n".join(lines + [""] + sections)


def build_summary(profile: str) -> Path:
    """Write the profile's summary and its overview figure; for the default profile, the README's two blocks too
    (when the README beside the results exists). Returns the summary's path."""
    readme = readme_path()
    new_readme = None
    if profile == DEFAULT_PROFILE and readme.exists():
        new_readme = updated_readme(readme.read_text(), profile)  # first: a README without markers stops the run
    write_figure(overview_path(profile), overview.plot_gains(overview.all_gains(profile)))
    path = summary_path(profile)
    atomic_write_text(path, summary_text(profile))
    if new_readme is not None:
        atomic_write_text(readme, new_readme)
    return path
