"""Claims are data: each says which arm beats which on which metric, and its verdict is computed from seeds.

The test is a one-sided paired t-test over seeds (arm pairs share a seed: same data order and, where the arms
share one, the same teacher):
- reproduced: the mean difference favours the claim and p < alpha;
- not reproduced: the mean difference is zero or favours the other arm;
- inconclusive: it favours the claim but p >= alpha, or fewer than two seeds were run.
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


@dataclass(frozen=True)
class Verdict:
    statement: str
    better: str
    worse: str
    metric: str
    verdict: str
    better_mean: float
    worse_mean: float
    mean_gain: float            # in the claim's favour: positive supports it
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


def judge(claim: Claim, runs: pd.DataFrame, evaluated: bool = True) -> Verdict:
    """Verdict of one claim from a runs table with columns arm, seed and the claim's metric."""
    arms = set(runs["arm"])
    for arm in (claim.better, claim.worse):
        if arm not in arms:
            raise KeyError(f"claim {claim.statement!r} names arm {arm!r}; the runs have {sorted(arms)}")
    paired = (runs[runs["arm"] == claim.better].set_index("seed")[claim.metric].to_frame("better")
              .join(runs[runs["arm"] == claim.worse].set_index("seed")[claim.metric].to_frame("worse"), how="inner"))
    sign = -1.0 if claim.lower_is_better else 1.0
    gains = [sign * (b - w) for b, w in zip(paired["better"], paired["worse"])]
    mean_gain = sum(gains) / len(gains) if gains else math.nan
    p = paired_one_sided_p(gains) if len(gains) >= 2 else math.nan
    if not evaluated:
        verdict = NOT_EVALUATED
    elif len(gains) < 2:
        verdict = INCONCLUSIVE
    elif mean_gain <= 0:
        verdict = NOT_REPRODUCED
    else:
        verdict = REPRODUCED if p < claim.alpha else INCONCLUSIVE
    return Verdict(claim.statement, claim.better, claim.worse, claim.metric, verdict,
                   float(paired["better"].mean()), float(paired["worse"].mean()), mean_gain, p, len(gains))


def judge_all(claims: list[Claim], runs: pd.DataFrame, evaluated: bool = True) -> list[Verdict]:
    return [judge(claim, runs, evaluated) for claim in claims]
