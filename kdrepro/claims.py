"""Claims are data, and a verdict says what the experiment could see (the standard: ../shared/SCIENCE.md).

Arms are paired by seed (same data order and, where they share one, the same teacher). A claim's *gain* has one
definition: the per-seed advantage of the claim's arm over what it is compared with, signed in the claim's favour,
in the metric's units (runs.csv's: error as a fraction, BLEU in BLEU points). Each claim has its test, one-sided at
alpha = 0.05, a paired t-test on the gains:
- `Claim` "A beats B": H0 gain <= 0. With a `margin`, "A approaches B (trails it by less than margin) or beats it"
  (non-inferiority): H0 gain <= -margin.
- `Recovers` "A recovers more than `share` of what `lost_from` lost against `lost_to`": the gain is what A recovers
  minus `share` of what was lost, (lost_from - A) - share * (lost_from - lost_to) for an error; H0 gain <= 0.
- `Alike` "A and B lie within +-margin": two one-sided tests (TOST) on the difference A - B, p the larger.

The smallest effect of interest (SESOI), one rule for every claim: half the paper's own effect, translated to our
metric as the same relative change of what the claim compares with (a `Claim`: the compared arm's mean; `Recovers`:
the accuracy lost); where the paper gives no number for the comparison, a 10% relative change (so 5%). A claim with
a margin has the margin as its SESOI: the gain must stay above -margin for "approaches", and the difference within
+-margin for "alike".

Verdicts, in this order:
- not testable here: a precondition failed. A `Precondition` is a lead of one arm over another (a teacher over its
  student) of at least 5% of the other's value, the default SESOI, checked on validation data; runs without
  validation metrics are checked on test data, and the row says so. A `Fits` asks that an arm fit its training
  set (its training error at most a bound): the regime a method is claimed to act in.
- reproduced: p, Holm-adjusted over the paper's testable claims, below 0.05;
- not reproduced: the one-sided 95% upper bound of the gain lies below the SESOI (for "alike": a one-sided bound
  of the difference lies beyond the margin), so an effect as large as the one that mattered is ruled out;
- inconclusive: neither; the row gives the minimum detectable effect (MDE, 80% power) and the seeds it would take.
The smoke profile is too small to mean anything and says "not evaluated".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
from scipy import special  # the t distributions alone: scipy.stats costs every notebook's kernel 0.8 s to import

from kdrepro.results import markdown_table

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable here"
NOT_EVALUATED = "not evaluated"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE)

ALPHA = 0.05                   # one-sided, after Holm's adjustment within a paper
POWER = 0.80                   # for the minimum detectable effect
SESOI_FRACTION = 0.5           # of the paper's own effect
DEFAULT_RELATIVE_EFFECT = 0.10  # the paper's effect where it gives no number: a 10% relative change
DEFAULT_LEAD = SESOI_FRACTION * DEFAULT_RELATIVE_EFFECT  # a precondition's lead: the default SESOI, 5%
CHANCE_ERROR = 0.9             # guessing among 10 classes; every classification task here has 10 or more
CHANCE_TOLERANCE = 0.05        # an error this close to chance is a run that learned nothing
MAX_SEEDS = 1000               # seeds_needed searches up to here
NEAR_THRESHOLD = 1.25          # a p within this factor of ALPHA, or a bound within 25% of the SESOI, is flagged


@dataclass(frozen=True)
class Metric:
    label: str              # what the metric is, as a table header says it
    points: str             # the unit a difference is drawn in
    scale: float            # runs.csv value -> points
    lower_is_better: bool
    digits: int = 2         # decimals shown, in points
    reads_test: bool = True  # False: computed on training images only, so a pilot may read it as it is


METRICS = {
    "test_error": Metric("test error %", "test error, % points", 100, lower_is_better=True),
    "omitted_error": Metric("omitted-class error %", "omitted-class error, % points", 100, lower_is_better=True),
    "recall_at_1": Metric("Recall@1 %", "Recall@1, % points", 100, lower_is_better=False),
    "bleu": Metric("BLEU", "BLEU points", 1, lower_is_better=False),
    "bleu_beam1": Metric("BLEU greedy", "BLEU points", 1, lower_is_better=False),
    "bleu_beam5": Metric("BLEU beam 5", "BLEU points", 1, lower_is_better=False),
    "bleu_drop_beam1": Metric("BLEU drop from short to long sources, greedy", "BLEU points", 1, lower_is_better=True),
    "noise_loss_rise": Metric("training-loss rise under weight noise", "loss rise", 1, lower_is_better=True,
                              digits=4, reads_test=False),
}


def metric(name: str) -> Metric:
    """The metric's presentation; a metric not listed is shown as it is, in its own units."""
    return METRICS.get(name, Metric(name, name, 1, lower_is_better=True))


def validation_column(test_metric: str) -> str:
    """Where a run records the validation twin of a test metric: test_error -> val_error, bleu -> val_bleu."""
    return "val_" + test_metric.removeprefix("test_")


@dataclass(frozen=True)
class Precondition:
    """`better` leads `worse` on the claim's metric, on validation data, by at least `lead` of `worse`'s mean (the
    default SESOI: a teacher that leads by less has no effect of interest to pass on)."""
    better: str
    worse: str
    lead: float = DEFAULT_LEAD

    def statement(self) -> str:
        return f"{self.better} leads {self.worse} by at least {self.lead:.0%} of {self.worse}'s mean"


@dataclass(frozen=True)
class Fits:
    """`arm` fits its training set: its training error ("train_error"), averaged over seeds, is at most `error`.
    The regime a method is claimed to act in: a network that memorises its training images and overfits, which
    mutual learning regularises (Zhang et al. 2018), or a teacher that passes on none of its own mistakes on them
    (Furlanello et al. 2018)."""
    arm: str
    error: float = 0.01

    def statement(self) -> str:
        return f"{self.arm} fits its training set (training error at most {self.error:.0%})"

    def check(self, runs: pd.DataFrame) -> dict[str, object]:
        """The outcome, in `check_precondition`'s form: "lead" is the room left below the bound (negative when
        the arm's training error exceeds it), "reading" its mean training error."""
        rows = runs[runs["arm"] == self.arm]
        if rows.empty or "train_error" not in rows or rows["train_error"].isna().any():
            raise KeyError(f"precondition {self.statement()!r}: the runs of {self.arm!r} record no train_error; "
                           "measure the arm with measures.TrainingError")
        error = float(rows["train_error"].mean())
        return {"precondition": self.statement(), "passed": bool(error <= self.error), "lead": self.error - error,
                "needed": 0.0, "checked_on": "training split", "reading": f"training error {error:.2%}"}


@dataclass(frozen=True)
class Claim:
    statement: str
    better: str                 # the arm the claim is about
    worse: str                  # the arm it is compared with
    metric: str = "test_error"  # a column of the runs table
    lower_is_better: bool = True
    margin: float = 0.0         # > 0: "approaches or beats": the arm may trail by up to margin, in the metric's units
    paper: tuple[float, float] | None = None  # the paper's (worse, better), in the metric's direction (error, not
    source: str = ""                          # accuracy): its effect, for the SESOI; `source` says where from
    preconditions: tuple[Precondition | Fits, ...] = ()

    @property
    def kind(self) -> str:
        return "approaches" if self.margin else "beats"

    @property
    def arm(self) -> str:
        return self.better

    @property
    def compared_with(self) -> str:
        return self.worse

    def arms(self) -> tuple[str, ...]:
        return self.better, self.worse

    def values(self, runs: pd.DataFrame) -> pd.DataFrame:
        """Per seed: the arm's value ("arm") and the compared value ("compared")."""
        return paired(runs, self.metric, arm=self.better, compared=self.worse)

    def sesoi(self, values: pd.DataFrame) -> tuple[float, str]:
        """The smallest gain of interest, in the metric's units, and its reason."""
        if self.margin:
            return -self.margin, f"the claim's margin: trailing by less than {points(self.margin, self.metric, False)}"
        relative, reason = paper_relative_effect(self.paper, self.lower_is_better, self.source)
        return SESOI_FRACTION * relative * abs(values["compared"].mean()), reason

    def p_value(self, gains: np.ndarray) -> float:
        return one_sided_p(gains, null=-self.margin)

    def effect_to_detect(self, sesoi: float) -> float:
        """What a seed count must see: the SESOI beyond H0; with a margin, a true gain of 0, margin beyond H0."""
        return self.margin or sesoi

    def notes(self, values: pd.DataFrame) -> list[str]:
        return []


@dataclass(frozen=True)
class Recovers:
    statement: str
    better: str                 # the arm that recovers
    lost_from: str              # the arm that lost
    lost_to: str                # the arm it lost against
    share: float = 0.5          # "most": more than half
    metric: str = "test_error"
    lower_is_better: bool = True
    paper_share: float | None = None  # the share the paper recovered, for the SESOI
    source: str = ""
    preconditions: tuple[Precondition | Fits, ...] = ()

    kind = "recovers"

    @property
    def arm(self) -> str:
        return self.better

    @property
    def compared_with(self) -> str:
        return f"{self.share:.0%} of {self.lost_from} -> {self.lost_to}"

    def arms(self) -> tuple[str, ...]:
        return self.better, self.lost_from, self.lost_to

    def values(self, runs: pd.DataFrame) -> pd.DataFrame:
        """Per seed: the arm's value and the value that recovers exactly `share` of the loss; "lost" too."""
        table = paired(runs, self.metric, arm=self.better, lost_from=self.lost_from, lost_to=self.lost_to)
        table["lost"] = table["lost_from"] - table["lost_to"]
        table["compared"] = table["lost_from"] - self.share * table["lost"]
        return table

    def sesoi(self, values: pd.DataFrame) -> tuple[float, str]:
        lost = abs(values["lost"].mean())
        if self.paper_share is None:
            return DEFAULT_LEAD * lost, "no number in the paper: the default 10% (halved) of the accuracy lost"
        beyond = self.paper_share - self.share
        return (SESOI_FRACTION * beyond * lost,
                f"half the paper's {self.paper_share:.0%} - {self.share:.0%} = {beyond:.0%} of the accuracy lost "
                f"({self.source}), on ours")

    def p_value(self, gains: np.ndarray) -> float:
        return one_sided_p(gains)

    def effect_to_detect(self, sesoi: float) -> float:
        return sesoi

    def notes(self, values: pd.DataFrame) -> list[str]:
        share = (values["lost_from"] - values["arm"]).mean() / values["lost"].mean()
        lost = points(abs(values["lost"].mean()), self.metric, sign=False)
        return [f"recovers {share:.0%} of the {lost} points lost (the claim: more than {self.share:.0%})"]


@dataclass(frozen=True)
class Alike:
    statement: str
    first: str
    second: str
    margin: float               # "alike": the true mean difference lies within +-margin, in the metric's units
    metric: str = "test_error"
    lower_is_better: bool = True
    preconditions: tuple[Precondition | Fits, ...] = ()

    kind = "alike"

    @property
    def arm(self) -> str:
        return self.first

    @property
    def compared_with(self) -> str:
        return self.second

    def arms(self) -> tuple[str, ...]:
        return self.first, self.second

    def values(self, runs: pd.DataFrame) -> pd.DataFrame:
        return paired(runs, self.metric, arm=self.first, compared=self.second)

    def sesoi(self, values: pd.DataFrame) -> tuple[float, str]:
        return self.margin, f"the claim's margin: a difference within ±{points(self.margin, self.metric, False)}"

    def p_value(self, differences: np.ndarray) -> float:
        """TOST: both one-sided tests, -margin < difference and difference < margin, must reject; p the larger."""
        return max(one_sided_p(self.margin - differences), one_sided_p(self.margin + differences))

    def effect_to_detect(self, sesoi: float) -> float:
        return self.margin

    def notes(self, values: pd.DataFrame) -> list[str]:
        return []


AnyClaim = Claim | Recovers | Alike


@dataclass(frozen=True)
class Verdict:
    statement: str
    kind: str                   # beats / approaches / recovers / alike
    arm: str
    compared_with: str
    metric: str
    verdict: str
    arm_mean: float
    compared_mean: float
    gain: float                 # mean gain in the claim's favour (alike: the mean difference arm - compared)
    gain_lower_bound: float     # one-sided 95% bounds of the mean gain (of the difference, for alike)
    gain_upper_bound: float
    sesoi: float                # in the gain's units: > 0 beats/recovers, -margin approaches, the margin alike
    sesoi_reason: str
    mde: float                  # the true effect beyond H0 found with 80% power at these seeds (alike: the margin)
    seeds_needed: int | None    # seeds for the MDE to reach the SESOI at this SD; None: more than MAX_SEEDS
    p_value: float
    p_adjusted: float           # Holm within the paper; NaN when the claim was not tested
    seeds: int
    preconditions: list[dict[str, object]]
    notes: list[str]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# --- paired statistics --------------------------------------------------------------------------------------------

def paired(runs: pd.DataFrame, column: str, **arms: str) -> pd.DataFrame:
    """One row per seed that every arm ran: `column` of each arm, under the keyword's name."""
    present = set(runs["arm"])
    for arm in arms.values():
        if arm not in present:
            raise KeyError(f"a claim names arm {arm!r}; the runs have {sorted(present)}")
    frames = [runs[runs["arm"] == arm].set_index("seed")[column].rename(name) for name, arm in arms.items()]
    return pd.concat(frames, axis=1, join="inner").sort_index()


def gains_in_favour(values: pd.DataFrame, claim: AnyClaim) -> np.ndarray:
    """Per seed, the arm's advantage in the claim's favour (alike: the plain difference arm - compared)."""
    difference = (values["arm"] - values["compared"]).to_numpy(dtype=float)
    if isinstance(claim, Alike) or not claim.lower_is_better:
        return difference
    return -difference


def one_sided_p(gains: np.ndarray, null: float = 0.0) -> float:
    """P(a mean gain this large | true mean gain = null), paired t-test, n - 1 degrees of freedom."""
    if np.ptp(gains) == 0:  # identical gains: the t statistic is infinite (or undefined at the null)
        return 0.0 if gains.mean() > null else 1.0
    t = (gains.mean() - null) / (np.std(gains, ddof=1) / math.sqrt(len(gains)))
    return float(special.stdtr(len(gains) - 1, -t))   # P(T_{n-1} >= t)


def one_sided_bounds(gains: np.ndarray, confidence: float = 1 - ALPHA) -> tuple[float, float]:
    """The one-sided `confidence` lower and upper bounds of the mean: mean -+ t_{confidence, n-1} sd / sqrt(n)."""
    n = len(gains)
    half_width = special.stdtrit(n - 1, confidence) * np.std(gains, ddof=1) / math.sqrt(n)
    return float(gains.mean() - half_width), float(gains.mean() + half_width)


def power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the one-sided paired t-test when the true mean gain lies `effect` beyond H0: the noncentral t with
    n - 1 degrees of freedom and noncentrality effect sqrt(n) / sd exceeds the critical t_{1-alpha, n-1}."""
    critical = special.stdtrit(n - 1, 1 - alpha)
    return float(1 - special.nctdtr(n - 1, effect * math.sqrt(n) / sd, critical))


def minimum_detectable_effect(sd: float, n: int, alpha: float = ALPHA, target: float = POWER) -> float:
    """The true effect (beyond H0, in the gains' units) that the one-sided paired t-test finds with `target` power."""
    if n < 2 or not np.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    low, high = 0.0, 1000 * sd   # power grows with the effect: bisect down to float precision
    while low < (middle := (low + high) / 2) < high:
        low, high = (low, middle) if power(middle, sd, n, alpha) >= target else (middle, high)
    return high


EQUIVALENCE_POWER = 1 - (1 - POWER) / 2   # each of TOST's two one-sided tests (see equivalence_mde)


def equivalence_mde(sd: float, n: int) -> float:
    """The smallest margin TOST shows with 80% power when the true difference is 0: each one-sided test then needs
    90% power (the two miss on opposite sides, so their misses add up to at most 20%)."""
    return minimum_detectable_effect(sd, n, target=EQUIVALENCE_POWER)


def seeds_needed(sd: float, effect: float, alike: bool = False) -> int | None:
    """The fewest seeds whose MDE, at this SD of the gains, is no larger than `effect`; None beyond MAX_SEEDS.
    Power grows with the effect, so MDE(n) <= effect exactly when the power at `effect` reaches the target: one
    power evaluation per seed count tried, not a root search."""
    if not (np.isfinite(sd) and effect > 0):
        return None
    if sd == 0:
        return 2
    target = EQUIVALENCE_POWER if alike else POWER

    def reaches(n: int) -> bool:
        return power(effect, sd, n) >= target   # n >= 2: the bisection below never tries n = 1

    if not reaches(MAX_SEEDS):
        return None
    low, high = 1, MAX_SEEDS  # power grows as seeds are added: bisect for the first n that reaches the target
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if reaches(middle) else (middle, high)
    return high


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: the i-th smallest of m p-values becomes max over j <= i of (m - j + 1) p_(j),
    capped at 1, returned in the input's order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values: the i-th smallest of m p-values becomes min over j >= i of
    p_(j) (m / j), capped at 1, returned in the input's order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 1.0
    for rank in reversed(range(len(order))):
        running = min(running, p_values[order[rank]] * (len(p_values) / (rank + 1)))
        adjusted[order[rank]] = running
    return adjusted


# --- diverged runs ------------------------------------------------------------------------------------------------

def diverged(runs: pd.DataFrame) -> pd.Series:
    """Per run: True when it diverged, a metric infinite or an error at chance level (within CHANCE_TOLERANCE of
    guessing; a NaN or infinite loss already stops training)."""
    numbers = runs.select_dtypes("number").drop(columns=["seed"], errors="ignore")
    flag = pd.Series(np.isinf(numbers.to_numpy(dtype=float)).any(axis=1), index=runs.index)
    for column in ("test_error", "val_error"):
        if column in runs:
            flag |= runs[column] >= CHANCE_ERROR - CHANCE_TOLERANCE
    for column in ("test_accuracy", "val_accuracy"):
        if column in runs:
            flag |= runs[column] <= 1 - CHANCE_ERROR + CHANCE_TOLERANCE
    return flag


def with_diverged(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with their `diverged` column (recomputed)."""
    if runs.empty:
        return runs
    return runs.assign(diverged=diverged(runs.drop(columns=["diverged"], errors="ignore")))


def diverged_runs(runs: pd.DataFrame, arms: tuple[str, ...]) -> list[str]:
    """'arm seed s' for every diverged run of these arms."""
    flagged = with_diverged(runs)
    rows = flagged[flagged["arm"].isin(arms) & flagged["diverged"]]
    return [f"{arm} seed {seed}" for arm, seed in zip(rows["arm"], rows["seed"])]


# --- verdicts -----------------------------------------------------------------------------------------------------

def paper_relative_effect(paper: tuple[float, float] | None, lower_is_better: bool,
                          source: str) -> tuple[float, str]:
    """The paper's effect as a relative change of its compared arm, and the SESOI's reason; the default without one."""
    if paper is None:
        return DEFAULT_RELATIVE_EFFECT, f"no number in the paper: half the default {DEFAULT_RELATIVE_EFFECT:.0%}"
    worse, better = paper
    relative = (worse - better) / worse if lower_is_better else (better - worse) / worse
    return relative, (f"half the paper's {relative:.0%} relative change ({worse:g} -> {better:g}, {source}), "
                      f"of our compared arm's mean")


def check_precondition(precondition: Precondition | Fits, claim: AnyClaim, runs: pd.DataFrame) -> dict[str, object]:
    """The lead of `better` over `worse` on validation data (on test data, said so, where the runs lack it); a
    `Fits` reads the arm's training error."""
    if isinstance(precondition, Fits):
        return precondition.check(runs)
    arms = {"arm": precondition.better, "compared": precondition.worse}
    column, checked_on = validation_column(claim.metric), "validation"
    if column not in runs:
        column, checked_on = claim.metric, "checked on test: these runs predate validation metrics"
    else:
        missing = [arm for arm in arms.values() if runs.loc[runs["arm"] == arm, column].isna().any()]
        if missing:
            column, checked_on = claim.metric, f"checked on test: {', '.join(missing)} has no {column} in these runs"
    values = paired(runs, column, **arms)
    sign = -1 if claim.lower_is_better else 1
    lead = float(sign * (values["arm"] - values["compared"]).mean())
    needed = precondition.lead * abs(float(values["compared"].mean()))
    return {"precondition": precondition.statement(), "passed": bool(lead >= needed), "lead": lead,
            "needed": needed, "checked_on": checked_on}


def measure(claim: AnyClaim, runs: pd.DataFrame) -> Verdict:
    """Everything about one claim but its verdict and adjusted p, which need the paper's other claims."""
    values = claim.values(runs)
    gains = gains_in_favour(values, claim)
    n = len(gains)
    sd = float(np.std(gains, ddof=1)) if n >= 2 else math.nan
    sesoi, reason = claim.sesoi(values)
    mde = equivalence_mde if claim.kind == "alike" else minimum_detectable_effect
    p, (lower, upper) = (claim.p_value(gains), one_sided_bounds(gains)) if n >= 2 else (math.nan, (math.nan, math.nan))
    notes = [f"diverged, kept in the test: {run}" for run in diverged_runs(runs, claim.arms())]
    return Verdict(claim.statement, claim.kind, claim.arm, claim.compared_with, claim.metric, "",
                   float(values["arm"].mean()), float(values["compared"].mean()),
                   float(gains.mean()) if n else math.nan,
                   lower, upper, float(sesoi), reason, mde(sd, n),
                   seeds_needed(sd, claim.effect_to_detect(sesoi), alike=claim.kind == "alike"), p, math.nan, n,
                   [check_precondition(pre, claim, runs) for pre in claim.preconditions],
                   notes + (claim.notes(values) if n else []))


def refuted(v: Verdict) -> bool:
    """An effect as large as the SESOI is ruled out by the one-sided 95% bound(s)."""
    if v.kind == "alike":
        return v.gain_lower_bound > v.sesoi or v.gain_upper_bound < -v.sesoi
    return v.gain_upper_bound < v.sesoi


def decide(v: Verdict) -> str:
    if not all(pre["passed"] for pre in v.preconditions):
        return NOT_TESTABLE
    if v.p_adjusted < ALPHA:
        return REPRODUCED
    if refuted(v):
        return NOT_REPRODUCED
    return INCONCLUSIVE


def judge_all(claims: list[AnyClaim], runs: pd.DataFrame, evaluated: bool = True) -> list[Verdict]:
    """Verdicts of one paper's claims: Holm's adjustment over those whose preconditions hold decides."""
    measured = [measure(claim, runs) for claim in claims]
    tested = [i for i, v in enumerate(measured)
              if all(pre["passed"] for pre in v.preconditions) and not math.isnan(v.p_value)]
    adjusted = dict(zip(tested, holm([measured[i].p_value for i in tested])))
    verdicts = []
    for i, v in enumerate(measured):
        v = replace(v, p_adjusted=adjusted.get(i, math.nan))
        verdict = decide(v) if evaluated else NOT_EVALUATED
        verdicts.append(replace(v, verdict=verdict, notes=v.notes + qualifications(v, verdict)))
    return verdicts


def qualifications(v: Verdict, verdict: str) -> list[str]:
    """What the verdict alone does not say: a reproduced effect smaller than the SESOI, and a verdict that sits on
    one of its thresholds, which a rerun on other hardware may cross: an adjusted p near ALPHA (whatever the
    verdict: an effect ruled out at p just above ALPHA is one rerun from reproduced), or an upper bound near the
    SESOI."""
    notes = []
    if verdict == REPRODUCED and v.kind in ("beats", "recovers") and v.gain_upper_bound < v.sesoi:
        notes.append("the effect is smaller than the SESOI: the direction holds, the size does not")
    if verdict in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE) and \
            ALPHA / NEAR_THRESHOLD <= v.p_adjusted <= ALPHA * NEAR_THRESHOLD:
        notes.append(f"on a threshold: the adjusted p is within a factor {NEAR_THRESHOLD:g} of {ALPHA:g}")
    if verdict in (NOT_REPRODUCED, INCONCLUSIVE) and v.kind != "alike" and \
            abs(v.gain_upper_bound - v.sesoi) <= (NEAR_THRESHOLD - 1) * abs(v.sesoi):
        notes.append(f"on a threshold: the upper bound is within {NEAR_THRESHOLD - 1:.0%} of the SESOI")
    return notes


def judge(claim: AnyClaim, runs: pd.DataFrame, evaluated: bool = True) -> Verdict:
    """The verdict of one claim alone (Holm over one claim leaves its p as it is)."""
    return judge_all([claim], runs, evaluated)[0]


# --- presentation -------------------------------------------------------------------------------------------------

def points(value: float, metric_name: str, sign: bool = True) -> str:
    """A value of the metric in its points (error in % points), with the metric's decimals."""
    m = metric(metric_name)
    return f"{value * m.scale:{'+' if sign else ''}.{m.digits}f}"


def gain_cell(v: Verdict) -> str:
    """The gain (alike: the difference) with its one-sided 95% lower and upper bounds."""
    bounds = f"[{points(v.gain_lower_bound, v.metric)}, {points(v.gain_upper_bound, v.metric)}]"
    return f"{'difference ' if v.kind == 'alike' else ''}{points(v.gain, v.metric)} {bounds}"


def sesoi_cell(v: Verdict) -> str:
    if v.kind == "alike":
        return f"margin ±{points(v.sesoi, v.metric, sign=False)}"
    if v.kind == "approaches":
        return f"margin {points(-v.sesoi, v.metric, sign=False)} (gain > {points(v.sesoi, v.metric)})"
    return points(v.sesoi, v.metric)


def precondition_text(outcome: dict[str, object], metric_name: str) -> str:
    held = "held" if outcome["passed"] else "failed"
    if "reading" in outcome:
        return f"{outcome['precondition']}: {outcome['reading']}, {held} ({outcome['checked_on']})"
    return (f"{outcome['precondition']}: {points(outcome['lead'], metric_name)} against "
            f"{points(outcome['needed'], metric_name, sign=False)} needed, {held} ({outcome['checked_on']})")


def verdict_rows(verdicts: list[Verdict]) -> list[dict[str, object]]:
    """Claims as table rows, in the metric's points: both means, the gain and its one-sided 95% bounds, the SESOI,
    the MDE at this seed count, raw and Holm-adjusted p, seeds, the verdict, and what qualifies it."""
    return [{"claim": v.statement, "metric": metric(v.metric).label,
             "arm (mean)": f"{v.arm} {points(v.arm_mean, v.metric, sign=False)}",
             "compared with (mean)": f"{v.compared_with} {points(v.compared_mean, v.metric, sign=False)}",
             "gain [95% bounds]": gain_cell(v), "SESOI": sesoi_cell(v),
             "MDE (80%)": points(v.mde, v.metric, sign=False), "p": f"{v.p_value:.3g}",
             "p (Holm)": f"{v.p_adjusted:.3g}" if not math.isnan(v.p_adjusted) else "not tested",
             "seeds": v.seeds, "verdict": f"**{v.verdict}**",
             "notes": "; ".join([precondition_text(o, v.metric) for o in v.preconditions] + v.notes)}
            for v in verdicts]


def seeds_sentence(v: Verdict, effect: str) -> str:
    if v.seeds_needed is not None and v.seeds_needed <= v.seeds:
        return (f"that is already within {effect}, so more seeds would mostly confirm a true gain smaller than the "
                f"one that mattered")
    if v.seeds_needed is None:
        return (f"more than {MAX_SEEDS:,} seeds would be needed at this spread, so a less noisy protocol, not more "
                f"seeds, would decide it")
    return f"about {v.seeds_needed} seeds would bring it down to {effect} at this spread"


def discussion_item(v: Verdict) -> str:
    """Two sentences on a claim that did not reproduce: the evidence, and what would change it."""
    unit = metric(v.metric).points
    gain = f"{'difference' if v.kind == 'alike' else 'gain'} {gain_cell(v)} ({unit})"
    if v.verdict == NOT_TESTABLE:
        failed = [o for o in v.preconditions if not o["passed"]]
        needs = ("" if "reading" in failed[0] else f" (a teacher that leads its student by "
                 f"{points(failed[0]['needed'], v.metric, sign=False)} ({unit}) or more)")
        return (f"**{v.statement}**: not testable here: {'; '.join(precondition_text(o, v.metric) for o in failed)}. "
                f"The {gain} is no evidence either way until a setup meets the precondition{needs}.")
    if v.verdict == NOT_REPRODUCED:
        limit = (f"beyond the margin ±{points(v.sesoi, v.metric, sign=False)}" if v.kind == "alike"
                 else f"below the SESOI of {points(v.sesoi, v.metric)} ({v.sesoi_reason})")
        return (f"**{v.statement}**: not reproduced: {gain}, its bound {limit}, so an effect that large is ruled "
                f"out at this scale. What would change it: a protocol closer to the paper's (see the departures); "
                f"more seeds would only narrow the interval around {points(v.gain, v.metric)}.{threshold_sentence(v)}")
    target = threshold_name(v)
    return (f"**{v.statement}**: inconclusive: {gain}, Holm-adjusted p = {v.p_adjusted:.3g}; neither shown nor ruled "
            f"out against {target}. At {v.seeds} seeds the test finds a true effect of "
            f"{points(v.mde, v.metric, sign=False)} with 80% power; {seeds_sentence(v, target)}."
            f"{threshold_sentence(v)}")


def threshold_name(v: Verdict) -> str:
    """What an inconclusive claim could neither show nor rule out, in words."""
    if v.kind == "alike":
        return f"the margin ±{points(v.sesoi, v.metric, sign=False)}"
    if v.kind == "approaches":
        return f"the margin {points(-v.sesoi, v.metric, sign=False)}"
    return f"the SESOI of {points(v.sesoi, v.metric)}"


def threshold_sentence(v: Verdict) -> str:
    near = [note.removeprefix("on a threshold: ") for note in v.notes if note.startswith("on a threshold")]
    if not near:
        return ""
    return f" It sits on a threshold ({'; '.join(near)}): a rerun on other hardware may call it otherwise."


def discussion(verdicts: list[Verdict]) -> str:
    """The notebook's closing discussion: every claim that did not reproduce, computed from its verdict."""
    items = [f"- {discussion_item(v)}" for v in verdicts if v.verdict in (NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE)]
    if any(v.verdict == NOT_EVALUATED for v in verdicts):
        return "The `smoke` profile checks the plumbing only: no claim is evaluated."
    return "\n".join(items) if items else "Every claim reproduced."


def claims_section(verdicts: list[Verdict]) -> str:
    """A results README's claims: the verdict table, then the discussion of the claims that did not reproduce."""
    return "\n".join([markdown_table(verdict_rows(verdicts)), "### Discussion", "", discussion(verdicts), ""])


def mark_diverged(table: list[dict[str, object]], runs: pd.DataFrame) -> list[dict[str, object]]:
    """The results table with a "diverged" column naming each arm's diverged seeds, when any run diverged (a row's
    arm covers its decodes too: "seq_kd" those of "seq_kd/greedy")."""
    flagged = with_diverged(runs)
    if flagged.empty or not flagged["diverged"].any() or not table or "arm" not in table[0]:
        return table
    bad = flagged[flagged["diverged"]]

    def seeds(arm: object) -> str:
        mine = bad[(bad["arm"] == arm) | bad["arm"].str.startswith(f"{arm}/")]
        return ", ".join(f"seed {s}" for s in sorted(set(mine["seed"])))

    return [{**row, "diverged": seeds(row["arm"])} for row in table]
