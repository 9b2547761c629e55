"""`python -m kdrepro compare OTHER`: which verdicts a second run of the same protocol changes.

Two cold runs that differ only in a source of noise the seeds do not control (the torch thread count, another
machine) should reach the same verdicts; a verdict that flips between them was decided by that noise. Compares each
paper's claims.json in results/<profile>/ with the one in OTHER/<profile>/, claim by claim (by statement).
"""

from __future__ import annotations

import json
from pathlib import Path

from kdrepro.claims import metric, points


def read_verdicts(folder: Path) -> dict[tuple[str, str], dict]:
    """Every claim published under `folder` (a profile's results), by (paper, statement)."""
    return {(claims.parent.name, claim["statement"]): claim
            for claims in sorted(folder.glob("*/claims.json")) for claim in json.loads(claims.read_text())}


def verdict_differences(ours: Path, theirs: Path) -> tuple[int, list[dict[str, object]]]:
    """The claims both folders publish, counted, and one row for each whose verdict differs (or that only one
    folder publishes), with both gains in the claim's units (a fraction of error, BLEU points...)."""
    a, b = read_verdicts(ours), read_verdicts(theirs)
    rows = []
    for paper, statement in sorted(a.keys() | b.keys()):
        first, second = a.get((paper, statement), {}), b.get((paper, statement), {})
        if first.get("verdict") != second.get("verdict"):
            rows.append({"paper": paper, "claim": statement, "verdict": first.get("verdict", "absent"),
                         "other verdict": second.get("verdict", "absent"), "judged": judged(first),
                         "other judged": judged(second), "precondition failed": bool(failed(first) or failed(second))})
    return len(a.keys() & b.keys()), rows


def judged(claim: dict) -> str:
    """How one run judged a claim: its verdict, the gain between its one-sided 95% bounds and the SESOI, in the
    metric's points, the adjusted p, and each precondition that failed with its lead and the lead it needed."""
    if not claim:
        return "absent"
    name = claim.get("metric", "")

    def shown(value: float | None, sign: bool = True) -> str:
        return "n/a" if value is None else points(value, name, sign)
    p_adjusted = claim.get("p_adjusted")
    text = (f"{claim['verdict']}: {shown(claim.get('gain'))} [{shown(claim.get('gain_lower_bound'))}, "
            f"{shown(claim.get('gain_upper_bound'))}] {metric(name).points}, SESOI {shown(claim.get('sesoi'), False)}, "
            f"p adj {'n/a' if p_adjusted is None else f'{p_adjusted:.3g}'}")
    return text + "".join(f"; failed: {p['precondition']} (lead {shown(p['lead'])}, needed {shown(p['needed'])})"
                          for p in failed(claim))


def failed(claim: dict) -> list[dict]:
    return [p for p in claim.get("preconditions", []) if not p["passed"]]


def print_differences(ours: Path, theirs: Path) -> None:
    if not theirs.is_dir():
        raise SystemExit(f"error: {theirs} is not a folder of results (give the folder that holds the papers' "
                         f"folders, e.g. /tmp/rerun/cpu)")
    both, rows = verdict_differences(ours, theirs)
    for row in rows:
        print(f"{row['paper']}: {row['claim']}\n    {row['judged']}\n -> {row['other judged']}")
    unmet = sum(bool(row["precondition failed"]) for row in rows)
    print(f"{len(rows)} verdict(s) differ ({unmet} of them where a precondition failed in one run); {both} claims "
          f"published in both {ours} and {theirs}")
