import math

import pandas as pd
import pytest

from kdrepro.claims import (
    INCONCLUSIVE,
    NOT_EVALUATED,
    NOT_REPRODUCED,
    REPRODUCED,
    Alike,
    Claim,
    judge,
    paired_one_sided_p,
)


def t2_sf(t: float) -> float:
    """Student's t with 2 degrees of freedom has a closed form: P(T > t) = 1/2 - t / (2 sqrt(2 + t^2))."""
    return 0.5 - t / (2 * math.sqrt(2 + t * t))


def runs(better: list[float], worse: list[float]) -> pd.DataFrame:
    rows = [{"arm": "kd", "seed": s, "test_error": v} for s, v in enumerate(better)]
    rows += [{"arm": "student", "seed": s, "test_error": v} for s, v in enumerate(worse)]
    return pd.DataFrame(rows)


CLAIM = Claim("kd beats student", better="kd", worse="student")


def test_paired_p_value_matches_the_closed_form_for_three_seeds():
    # gains 1, 2, 3: mean 2, sd 1, t = 2 sqrt(3)
    assert paired_one_sided_p([1.0, 2.0, 3.0]) == pytest.approx(t2_sf(2 * math.sqrt(3)), rel=1e-9)


def test_consistent_gains_are_reproduced():
    verdict = judge(CLAIM, runs([0.10, 0.11, 0.12], [0.20, 0.22, 0.24]))
    # gains 0.10, 0.11, 0.12: mean 0.11, sd 0.01, t = 11 sqrt(3)
    assert verdict.verdict == REPRODUCED
    assert verdict.mean_gain == pytest.approx(0.11)
    assert verdict.p_value == pytest.approx(t2_sf(11 * math.sqrt(3)), rel=1e-6)


def test_a_gain_against_the_claim_is_not_reproduced():
    assert judge(CLAIM, runs([0.3, 0.3, 0.3], [0.2, 0.2, 0.2])).verdict == NOT_REPRODUCED


def test_no_difference_is_not_reproduced():
    assert judge(CLAIM, runs([0.2, 0.2], [0.2, 0.2])).verdict == NOT_REPRODUCED


def test_a_noisy_gain_is_inconclusive():
    assert judge(CLAIM, runs([0.10, 0.30, 0.19], [0.20, 0.20, 0.20])).verdict == INCONCLUSIVE


def test_one_seed_is_inconclusive_and_smoke_is_not_evaluated():
    assert judge(CLAIM, runs([0.1], [0.2])).verdict == INCONCLUSIVE
    assert judge(CLAIM, runs([0.1, 0.1], [0.2, 0.3]), evaluated=False).verdict == NOT_EVALUATED


def test_higher_is_better_metrics_flip_the_sign():
    claim = Claim("kd has more recall", better="kd", worse="student", metric="test_error", lower_is_better=False)
    assert judge(claim, runs([0.3, 0.31, 0.32], [0.2, 0.2, 0.21])).verdict == REPRODUCED


def test_only_seeds_run_by_both_arms_are_paired():
    table = runs([0.1, 0.1, 0.1], [0.2, 0.2])
    assert judge(CLAIM, table).seeds == 2


def test_a_claim_naming_a_missing_arm_says_which_arms_exist():
    with pytest.raises(KeyError, match="names arm 'fitnet'.*'kd', 'student'"):
        judge(Claim("x", better="fitnet", worse="student"), runs([0.1], [0.2]))


ALIKE = Alike("kd and student are alike", first="kd", second="student", margin=0.5)


def test_alike_arms_within_the_margin_are_reproduced_with_the_tost_p_value():
    # differences 0.1, 0, -0.1: each one-sided test sees gains 0.4, 0.5, 0.6 (mean 0.5, sd 0.1): t = 5 sqrt(3)
    verdict = judge(ALIKE, runs([1.1, 1.0, 0.9], [1.0, 1.0, 1.0]))
    assert verdict.verdict == REPRODUCED
    assert verdict.p_value == pytest.approx(t2_sf(5 * math.sqrt(3)), rel=1e-6)
    assert verdict.mean_gain == pytest.approx(0.5)


def test_arms_further_apart_than_the_margin_are_not_alike():
    assert judge(ALIKE, runs([1.6, 1.7, 1.8], [1.0, 1.0, 1.0])).verdict == NOT_REPRODUCED


def test_alike_with_too_much_spread_is_inconclusive():
    assert judge(ALIKE, runs([1.4, 0.6, 1.3], [1.0, 1.0, 1.0])).verdict == INCONCLUSIVE


def test_a_margin_turns_beats_into_approaches_or_beats():
    runs = pd.DataFrame({"arm": ["fitnet"] * 3 + ["teacher"] * 3, "seed": [0, 1, 2] * 2,
                         "test_error": [0.105, 0.106, 0.104, 0.100, 0.100, 0.100]})
    strict = judge(Claim("beats", better="fitnet", worse="teacher"), runs)
    within = judge(Claim("within 2 points", better="fitnet", worse="teacher", margin=0.02), runs)
    assert strict.verdict == "not reproduced"
    assert within.verdict == "reproduced" and within.mean_gain == pytest.approx(0.02 - 0.005)
