"""Claims are data: which arm beats which (or which arms are alike) on which metric, judged over seeds.

Arms are paired by seed (same data order and, where they share one, the same teacher), and each claim has its
test:
- `Claim` (one arm beats another): a one-sided paired t-test on the per-seed gains; with a `margin`, the claim
  is "no worse than the other by more than margin" (non-inferiority: "approaches or beats");
- `Alike` (two arms within +-margin): two one-sided paired t-tests (TOST), p the larger of the two.
Verdicts: reproduced when the mean favours the claim and p < alpha; not reproduced when the mean does not favour
it at all (no gain, or a difference beyond the margin); inconclusive in between or with fewer than two seeds.
Smoke runs are too small to mean anything and say "not evaluated".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd
from scipy import stats

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_EVALUATED = "not evaluated"


@dataclass(frozen=True)
class Claim:
    statement: str
    better: str                 # arm expected to be better
    worse: str                  # arm it is compared with
    metric: str = "test_error"  # a column of the runs table
    lower_is_better: bool = True
    alpha: float = 0.05
    margin: float = 0.0         # > 0: the better arm may trail by up to margin, in the metric's units


@dataclass(frozen=True)
class Alike:
    statement: str
    first: str
    second: str
    margin: float               # "alike": the true mean difference lies within +-margin, in the metric's units
    metric: str = "test_error"
    alpha: float = 0.05


@dataclass(frozen=True)
class Verdict:
    statement: str
    arm: str
    compared_with: str
    metric: str
    verdict: str
    arm_mean: float
    compared_mean: float
    mean_gain: float            # in the claim's favour, positive supports it (Alike: margin - |mean difference|)
    p_value: float
    seeds: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def paired_one_sided_p(gains: list[float]) -> float:
    """P(mean gain this large | true mean gain 0) under a paired t-test with n - 1 degrees of freedom."""
    n = len(gains)
    mean = sum(gains) / n
    sd = math.sqrt(sum((g - mean) ** 2 for g in gains) / (n - 1))
    if sd == 0:
        return 0.0 if mean > 0 else 1.0
    return float(stats.t.sf(mean / (sd / math.sqrt(n)), df=n - 1))


def judge(claim: Claim | Alike, runs: pd.DataFrame, evaluated: bool = True) -> Verdict:
    """Verdict of one claim from a runs table with columns arm, seed and the claim's metric."""
    first, second = (claim.first, claim.second) if isinstance(claim, Alike) else (claim.better, claim.worse)
    arms = set(runs["arm"])
    for arm in (first, second):
        if arm not in arms:
            raise KeyError(f"claim {claim.statement!r} names arm {arm!r}; the runs have {sorted(arms)}")
    paired = (runs[runs["arm"] == first].set_index("seed")[claim.metric].to_frame("first")
              .join(runs[runs["arm"] == second].set_index("seed")[claim.metric].to_frame("second"), how="inner"))
    differences = list(paired["first"] - paired["second"])
    n = len(differences)
    if isinstance(claim, Alike):
        mean_gain = claim.margin - abs(sum(differences) / n) if n else math.nan
        p = max(paired_one_sided_p([claim.margin - d for d in differences]),
                paired_one_sided_p([claim.margin + d for d in differences])) if n >= 2 else math.nan
    else:
        gains = [(-d if claim.lower_is_better else d) + claim.margin for d in differences]
        mean_gain = sum(gains) / n if n else math.nan
        p = paired_one_sided_p(gains) if n >= 2 else math.nan
    if not evaluated:
        verdict = NOT_EVALUATED
    elif n < 2:
        verdict = INCONCLUSIVE
    elif mean_gain <= 0:
        verdict = NOT_REPRODUCED
    else:
        verdict = REPRODUCED if p < claim.alpha else INCONCLUSIVE
    return Verdict(claim.statement, first, second, claim.metric, verdict, float(paired["first"].mean()),
                   float(paired["second"].mean()), mean_gain, p, n)


def judge_all(claims: list[Claim | Alike], runs: pd.DataFrame, evaluated: bool = True) -> list[Verdict]:
    return [judge(claim, runs, evaluated) for claim in claims]
