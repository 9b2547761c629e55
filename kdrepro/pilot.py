"""`python -m kdrepro pilot`: size a protocol before its committed seeds are run (SCIENCE.md, "Design for power,
honestly").

The paper's runs (its `runs(P)`) at pilot seeds, which are never among the profile's committed seeds, and every
claim judged on the validation twin of its metric (`val_error` for `test_error`, ...), so that no choice made from a
pilot has seen a test image. Per claim: the pilot's mean gain and the SD of its paired gains, the SESOI, the
minimum detectable effect (MDE) at the committed seed count, and the seeds an MDE at the SESOI needs:

    MDE(n) = the true gain that the one-sided paired t-test (alpha 0.05, n - 1 degrees of freedom) finds with 80%
             power when the paired gains have the pilot's SD (claims.minimum_detectable_effect).

Written to results/<profile>/pilots/<paper>.csv, in the claim's points (% points of error, BLEU points, ...).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from kdrepro.claims import (AnyClaim, check_precondition, equivalence_mde, gains_in_favour, metric,
                            minimum_detectable_effect, seeds_needed, validation_column)
from kdrepro.experiment import Experiment
from kdrepro.paths import results_dir
from kdrepro.plan import datasets
from kdrepro.work import execute

PILOT_SEEDS = (100, 101, 102)


def pilot_runs(module: ModuleType, profile: str, seeds: tuple[int, ...], device: str = "auto") -> pd.DataFrame:
    """The paper's runs at `seeds` (through the cache, as its notebook runs them): one row per (arm, seed). A
    shared arm (one model for every seed, a paper's one teacher) is recorded at every pilot seed, as the notebook
    records it at every committed seed, so each seed's students are paired with it."""
    protocol = module.PROFILES[profile]
    committed = sorted(set(seeds) & set(protocol.seeds))
    if committed:
        raise ValueError(f"--seeds {','.join(map(str, committed))}: committed seeds of {module.PAPER.id}'s "
                         f"{profile!r} profile {list(protocol.seeds)}; a pilot uses others, e.g. "
                         f"{','.join(map(str, PILOT_SEEDS))}")
    pilot = replace(protocol, seeds=tuple(seeds))
    exp = Experiment(module, profile, device)
    data = datasets(module, pilot)
    for run in module.runs(pilot):
        if run.measure is None:
            execute(exp, run, data[run.data])
            continue
        result = exp.run(run.arm, data[run.data], run.measure)
        for seed in seeds if run.arm.shared else ():
            exp.record(run.arm.name, seed, result)
    return exp.runs


def on_validation(runs: pd.DataFrame, metric_name: str) -> pd.DataFrame:
    """`runs` with `metric_name` holding its validation twin, which every judgement of a pilot reads (a metric
    computed on training images only is its own twin)."""
    if not metric(metric_name).reads_test:
        return runs
    column = validation_column(metric_name)
    if column not in runs:
        raise ValueError(f"the runs record no {column} (the validation twin of {metric_name}): add it to the "
                         "paper's measure, or the pilot would have to read the test set")
    return runs.assign(**{metric_name: runs[column]})


def size_claim(claim: AnyClaim, runs: pd.DataFrame, committed_seeds: int) -> dict[str, object]:
    """One claim's row of the pilot table: its validation gain, SD, SESOI, MDE at `committed_seeds`, seeds needed,
    and its preconditions (checked on validation data, as a verdict checks them)."""
    row: dict[str, object] = {"claim": claim.statement, "arm": claim.arm, "compared_with": claim.compared_with}
    try:
        values = claim.values(on_validation(runs, claim.metric))
    except KeyError as missing:  # an arm the notebook computes from others (an ensemble), not a listed run
        return {**row, "note": f"not sized: {missing.args[0]}"}
    gains = gains_in_favour(values, claim)
    sd = float(np.std(gains, ddof=1)) if len(gains) >= 2 else float("nan")
    sesoi, _ = claim.sesoi(values)
    alike = claim.kind == "alike"
    mde = (equivalence_mde if alike else minimum_detectable_effect)(sd, committed_seeds)
    scale = metric(claim.metric).scale
    failed = [outcome["precondition"] for outcome in
              (check_precondition(pre, claim, runs) for pre in claim.preconditions) if not outcome["passed"]]
    return {**row, "units": metric(claim.metric).points, "pilot_seeds": len(gains),
            "validation_gain": float(gains.mean()) * scale, "sd_of_gains": sd * scale, "sesoi": float(sesoi) * scale,
            "committed_seeds": committed_seeds, "mde_at_committed_seeds": mde * scale,
            "seeds_needed": seeds_needed(sd, claim.effect_to_detect(sesoi), alike=alike),
            "preconditions": "hold" if not failed else "fail: " + "; ".join(failed), "note": ""}


def pilot(module: ModuleType, profile: str, seeds: tuple[int, ...] = PILOT_SEEDS, device: str = "auto") -> Path:
    """Run the pilot of one paper and write its table; the table's path."""
    runs = pilot_runs(module, profile, seeds, device)
    committed = len(module.PROFILES[profile].seeds)
    table = pd.DataFrame([size_claim(claim, runs, committed) for claim in module.CLAIMS])
    folder = results_dir() / profile / "pilots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module.PAPER.id}.csv"
    table.to_csv(path, index=False, float_format="%.4g")
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.max_colwidth", 60):
        print(table.drop(columns=["arm", "compared_with"]).to_string(index=False))
    print(f"pilot of {module.PAPER.id} ({profile}, seeds {list(seeds)}) written to {path}")
    return path
