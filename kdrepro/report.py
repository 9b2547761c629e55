"""The summary report: every paper's claims, judged again from its runs, and gathered for one profile.

`build_summary` first judges each paper's CLAIMS again from its runs.csv (nothing is trained): claims.json, the
diverged flags in runs.csv and table.csv, and the claims section of the paper's results README are rewritten, so a
change to the rules of a verdict reaches the committed results by `make report` (`reproduce` skips the papers
whose notebooks have just judged them, or did with this package). Then it writes the profile's
summary and its forest plot; for the default profile it also regenerates two blocks of the top-level README.md,
each between marker comments: the verdict counts, the forest plot and every claim's verdict; and every paper's
departures in one place.
"""

from __future__ import annotations

import io
import json
import math
import sys
from collections import Counter
from collections.abc import Collection
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from kdrepro import experiments, overview
from kdrepro.claims import (
    ALPHA,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_TESTABLE,
    REPRODUCED,
    VERDICTS,
    Verdict,
    benjamini_hochberg,
    claims_section,
    gain_cell,
    judge_all,
    mark_diverged,
    metric,
    sesoi_cell,
    verdict_rows,
    with_diverged,
)
from kdrepro.overview import NOT_RUN, load_verdicts
from kdrepro.paths import results_dir
from kdrepro.results import atomic_write_bytes, atomic_write_text, markdown_table

DEFAULT_PROFILE = "cpu"
RULES = ("Each claim is tested over seeds by a paired one-sided t-test (two one-sided tests for \"alike\"); "
         "Holm's adjustment within each paper decides: *reproduced* when the adjusted p < 0.05, *not reproduced* "
         "when the one-sided 95% upper bound of the gain lies below the claim's smallest effect of interest "
         "(SESOI), *inconclusive* otherwise, *not testable here* when a precondition declared with the claim "
         "failed. The SESOI rule and the preconditions are stated in the README's \"How a number is made\".")


def summary_path(profile: str) -> Path:
    """results/README.md for the default profile (the committed results), results/<profile>/README.md otherwise."""
    return results_dir() / ("README.md" if profile == DEFAULT_PROFILE else f"{profile}/README.md")


def overview_path(profile: str) -> Path:
    return results_dir() / profile / "overview.png"


def readme_path() -> Path:
    """The README beside the results folder: the repository's own, unless KDREPRO_RESULTS moved the results."""
    return results_dir().parent / "README.md"


def reproduce_record_path(profile: str) -> Path:
    """results/<profile>/reproduce.json: what the last `make reproduce` took, whole and per paper (`cli`)."""
    return results_dir() / profile / "reproduce.json"


def load_reproduce_record(profile: str) -> dict:
    """The last `make reproduce`'s record; without one, a record of no paper, neither cold nor complete."""
    path = reproduce_record_path(profile)
    return json.loads(path.read_text()) if path.exists() else {"papers": {}, "cold": False, "every_paper": False}


def load_provenance(profile: str, paper_id: str) -> dict | None:
    """The paper's provenance record (wall time, threads, commit...) from its last run; None if never run."""
    path = results_dir() / profile / paper_id / "provenance.json"
    return json.loads(path.read_text()) if path.exists() else None


# --- judging the published runs again ----------------------------------------------------------------------------

def read_strings(path: Path) -> pd.DataFrame:
    """A CSV as written, every cell a string, so that writing it back changes nothing but what is changed."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def flag_runs_file(path: Path) -> pd.DataFrame:
    """runs.csv with its `diverged` column (added or brought up to date in the file); the runs, parsed."""
    runs = pd.read_csv(path)
    flagged = with_diverged(runs)
    text = read_strings(path)
    column = flagged["diverged"].map(str).to_list()
    if "diverged" not in text or text["diverged"].to_list() != column:
        atomic_write_text(path, text.assign(diverged=column).to_csv(index=False))
    return flagged


def replace_section(text: str, heading: str, content: str) -> str:
    """`text` with the body of its `heading` section, up to the next "## " heading or figure line, replaced."""
    lines = text.split("\n")
    if heading not in lines:
        raise ValueError(f"no {heading!r} line in the results README; run the paper's notebook again to rewrite it")
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith(("## ", "!["))), len(lines))
    return "\n".join(lines[:start] + ["", content.rstrip("\n"), ""] + lines[end:])


def rejudge(profile: str, paper_id: str) -> list[Verdict] | None:
    """Judge the paper's CLAIMS again from its runs.csv and rewrite claims.json, the diverged flags and the results
    README's tables to match; None when the paper has no runs on this profile, or runs that predate its claims
    (an arm a claim names is missing: its verdicts stay as they were judged, and a warning says what to run)."""
    folder = results_dir() / profile / paper_id
    if not (folder / "runs.csv").exists():
        return None
    claims = experiments.module(paper_id).CLAIMS
    published = folder / "claims.json"
    if published.exists() and [v["statement"] for v in json.loads(published.read_text())] != \
            [claim.statement for claim in claims]:
        return stale(folder, paper_id, profile, "the paper's claims changed since they were published")
    runs = flag_runs_file(folder / "runs.csv")
    try:
        verdicts = judge_all(claims, runs, evaluated=profile != "smoke")
    except KeyError as error:
        return stale(folder, paper_id, profile, error.args[0])
    atomic_write_text(folder / "claims.json", json.dumps([v.as_dict() for v in verdicts], indent=1))
    readme = folder / "README.md"
    if readme.exists() and (folder / "table.csv").exists():
        table = mark_diverged(read_strings(folder / "table.csv").to_dict("records"), runs)
        atomic_write_text(folder / "table.csv", pd.DataFrame(table).to_csv(index=False))
        text = replace_section(readme.read_text(), "## Results", markdown_table(table))
        atomic_write_text(readme, replace_section(text, "## Claims", claims_section(verdicts)))
    return verdicts


def stale(folder: Path, paper_id: str, profile: str, why: str) -> None:
    """Say that the results in `folder` cannot be judged by today's claims, and what regenerates them; their
    published verdicts stay as they are."""
    print(f"warning: {folder}: {why}; these results keep the verdicts they were published with, and "
          f"`make reproduce PAPERS={paper_id} PROFILE={profile}` regenerates them", file=sys.stderr)


# --- counts -------------------------------------------------------------------------------------------------------

def profile_verdicts(profile: str) -> list[Verdict]:
    return [v for paper_id in experiments.PAPERS for v in (load_verdicts(profile, paper_id) or [])]


def claim_counts(profile: str) -> Counter:
    """How many claims got each verdict, over every paper with results."""
    return Counter(v.verdict for v in profile_verdicts(profile))


def count_line(counts: Counter) -> str:
    """'**N of M claims reproduced** (a not reproduced, b inconclusive, c not testable here)', each of the four
    verdicts named even at zero, and the smoke profile's 'not evaluated' too."""
    tested = sum(counts.values())
    if not tested:
        return "**0 of 0 claims reproduced** (no results yet)."
    others = [NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE] + [v for v in counts if v not in VERDICTS]
    return f"**{counts[REPRODUCED]} of {tested} claims reproduced** ({', '.join(f'{counts[v]} {v}' for v in others)})."


def fdr_line(verdicts: list[Verdict]) -> str:
    """How many reproductions survive Benjamini-Hochberg at 0.05 over every claim of the profile that was tested."""
    tested = [v for v in verdicts if not math.isnan(v.p_adjusted)]
    reproduced = sum(v.verdict == REPRODUCED for v in tested)
    if not reproduced:
        return ""
    adjusted = benjamini_hochberg([v.p_value for v in tested])
    surviving = sum(v.verdict == REPRODUCED and q < ALPHA for v, q in zip(tested, adjusted))
    return (f"{surviving} of the {reproduced} reproductions survive Benjamini-Hochberg at 0.05 over all "
            f"{len(tested)} claims tested in the profile.")


def verdict_counts_cell(verdicts: list[Verdict]) -> str:
    counts = Counter(v.verdict for v in verdicts)
    return " / ".join(str(counts[v]) for v in VERDICTS)


# --- tables -------------------------------------------------------------------------------------------------------

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
    m = metric(v.metric)
    return f"{v.arm} {v.arm_mean * m.scale:.4g} vs {v.compared_with} {v.compared_mean * m.scale:.4g} ({m.label})"


def claim_rows(profile: str) -> list[dict[str, object]]:
    """Every claim of every paper: our means beside the paper's numbers, the gain with its bounds, the SESOI and
    the verdict; "not run" papers too."""
    rows: list[dict[str, object]] = []
    for paper_id in experiments.PAPERS:
        name = overview.COMPARISONS[paper_id].name
        verdicts = load_verdicts(profile, paper_id)
        if verdicts is None:
            rows.append({"paper": name, "claim": "", "ours": "", "paper's": "", "gain [95% bounds]": "", "SESOI": "",
                         "seeds": 0, "verdict": NOT_RUN})
            continue
        context, numbers = paper_numbers(profile, paper_id)
        for v in verdicts:
            theirs = (f"{v.arm} {_paper_number(numbers, v.arm)}; "
                      f"{v.compared_with} {_paper_number(numbers, v.compared_with)}")
            rows.append({"paper": name, "claim": v.statement, "ours": _ours(v),
                         "paper's": f"{context}: {theirs}" if context else theirs, "gain [95% bounds]": gain_cell(v),
                         "SESOI": sesoi_cell(v), "seeds": v.seeds, "verdict": v.verdict})
    return rows


def readme_claim_rows(profile: str) -> list[dict[str, object]]:
    """The short form for the README: notebook (named once per paper), claim, gain, SESOI, verdict."""
    rows = []
    for paper_id, paper in experiments.PAPERS.items():
        link = f"[`{paper.notebook.removesuffix('.ipynb')}`](notebooks/{paper.notebook})"
        for i, v in enumerate(load_verdicts(profile, paper_id) or [None]):
            rows.append({"notebook": link if i == 0 else "", "claim": v.statement if v else "",
                         "gain [95% bounds]": gain_cell(v) if v else "", "SESOI": sesoi_cell(v) if v else "",
                         "unit": metric(v.metric).points if v else "", "verdict": v.verdict if v else NOT_RUN})
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


FIGURE_TITLE = "Every claim's gain with its interval and SESOI, coloured by verdict"


def summary_block(profile: str) -> str:
    """The README's opening block: the counts, the forest plot and every claim's verdict."""
    # links from the README, which sits beside the results folder
    figure = f"{results_dir().name}/{overview_path(profile).relative_to(results_dir()).as_posix()}"
    summary = f"{results_dir().name}/{summary_path(profile).relative_to(results_dir()).as_posix()}"
    fdr = fdr_line(profile_verdicts(profile))
    return "\n".join([
        f"{count_line(claim_counts(profile))}{' ' + fdr if fdr else ''} Profile `{profile}`. {RULES} "
        "Every claim with our numbers beside the paper's: [`00_overview`](notebooks/00_overview.ipynb); every "
        f"table, with its protocol and provenance: [`{summary}`]({summary}).", "",
        f"![{FIGURE_TITLE}]({figure})", "",
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


def paper_time(profile: str, paper_id: str) -> str:
    """What the paper's last run took. Its notebook's wall time includes the training only when the notebook
    trained its runs itself; after a `make reproduce` that trained them in its workers (its record in
    results/<profile>/reproduce.json names this very render), the workers' seconds come first."""
    seconds = load_provenance(profile, paper_id)["wall_seconds"]
    times = load_reproduce_record(profile)["papers"].get(paper_id)
    if times is None or not times["runs_seconds"] or times["render_seconds"] != seconds:
        return f"{seconds:.0f} s"
    return f"{times['runs_seconds']:.0f} s of training (workers) + {seconds:.0f} s notebook"


def summary_text(profile: str) -> str:
    """The profile's summary: the counts, the forest plot, a line per paper, then each paper's tables."""
    figure = overview_path(profile).relative_to(summary_path(profile).parent).as_posix()
    fdr = fdr_line(profile_verdicts(profile))
    lines = [f"# kdrepro results: profile `{profile}`", "",
             f"Regenerated by `make reproduce` and `make report` (never edited by hand). {RULES} Each paper's "
             "folder has the protocol, figures and provenance.", "",
             count_line(claim_counts(profile)) + (f" {fdr}" if fdr else ""), "",
             f"![{FIGURE_TITLE}]({figure})", "",
             f"| paper | transferred | scheme | {' / '.join(VERDICTS)} | time |", "|---|---|---|---|---|"]
    sections = []
    for paper_id, paper in experiments.PAPERS.items():
        verdicts = load_verdicts(profile, paper_id)
        folder = results_dir() / profile / paper_id
        if verdicts is None:
            lines.append(f"| {paper.title} | {paper.transferred} | {paper.scheme} | {NOT_RUN} | |")
            continue
        link = folder.relative_to(summary_path(profile).parent).as_posix()
        lines.append(f"| [{paper.title}]({link}/README.md) | {paper.transferred} | {paper.scheme} | "
                     f"{verdict_counts_cell(verdicts)} | {paper_time(profile, paper_id)} |")
        table = pd.read_csv(folder / "table.csv").fillna("").to_dict("records")
        sections += [f"## {paper.title}", "", markdown_table(table), markdown_table(verdict_rows(verdicts))]
    return "\n".join(lines + [""] + sections)


def build_summary(profile: str, judged: Collection[str] = ()) -> Path:
    """Judge every paper's runs again but those `judged` (whose notebooks judged them with this checkout's claims:
    `reproduce` passes the papers it ran or found done), then write the profile's summary and its forest plot;
    for the default profile the README's two blocks too (when the README beside the results exists). Returns the
    summary's path."""
    readme = readme_path()
    check_readme = profile == DEFAULT_PROFILE and readme.exists()
    if check_readme:
        replace_block(replace_block(readme.read_text(), "summary", ""), "departures", "")  # no markers: stop first
    for paper_id in experiments.PAPERS:
        if paper_id not in judged:
            rejudge(profile, paper_id)
    write_figure(overview_path(profile), overview.plot_forest(overview.all_verdicts(profile)))
    path = summary_path(profile)
    atomic_write_text(path, summary_text(profile))
    if check_readme:
        atomic_write_text(readme, updated_readme(readme.read_text(), profile))
    return path
