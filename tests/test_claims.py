import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from kdrepro.claims import (
    INCONCLUSIVE,
    NOT_EVALUATED,
    NOT_REPRODUCED,
    NOT_TESTABLE,
    REPRODUCED,
    Alike,
    Claim,
    Fits,
    Precondition,
    Recovers,
    benjamini_hochberg,
    discussion,
    equivalence_mde,
    diverged,
    holm,
    judge,
    judge_all,
    mark_diverged,
    minimum_detectable_effect,
    one_sided_bounds,
    one_sided_p,
    power,
    seeds_needed,
    verdict_rows,
)


def t2_sf(t: float) -> float:
    """Student's t with 2 degrees of freedom has a closed form: P(T > t) = 1/2 - t / (2 sqrt(2 + t^2))."""
    return 0.5 - t / (2 * math.sqrt(2 + t * t))


def t2_ppf(p: float) -> float:
    """Its quantile, also closed: t_p = (2p - 1) / sqrt(2 p (1 - p)); t_0.95 = 0.9 / sqrt(0.095) = 2.919986."""
    return (2 * p - 1) / math.sqrt(2 * p * (1 - p))


def runs_of(column: str = "test_error", **arms: list[float]) -> pd.DataFrame:
    """A runs table from arm=[value at seed 0, value at seed 1, ...]."""
    return pd.DataFrame([{"arm": arm, "seed": seed, column: value}
                         for arm, values in arms.items() for seed, value in enumerate(values)])


CLAIM = Claim("kd beats student", better="kd", worse="student")
STUDENT = [0.20, 0.21, 0.19, 0.20, 0.22]


# --- the statistics, against values worked out by hand -------------------------------------------------------------

def test_the_paired_p_value_matches_the_closed_form_for_three_seeds():
    # gains 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 2 sqrt(3)
    assert one_sided_p(np.array([1.0, 2.0, 3.0])) == pytest.approx(t2_sf(2 * math.sqrt(3)), rel=1e-9)


def test_the_one_sided_bounds_are_the_mean_minus_and_plus_t_times_the_standard_error():
    # gains 1, 2, 3: mean 2, standard error 1 / sqrt 3; t_0.95 with 2 df = 2.919986: 2 -+ 1.685854
    lower, upper = one_sided_bounds(np.array([1.0, 2.0, 3.0]))
    half_width = t2_ppf(0.95) / math.sqrt(3)
    assert half_width == pytest.approx(1.685854, abs=1e-6)
    assert (lower, upper) == pytest.approx((2 - half_width, 2 + half_width))


def test_holm_multiplies_the_ith_smallest_p_by_m_minus_i_and_keeps_the_order_monotone():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # 0.5 x 2 = 1, capped


def test_benjamini_hochberg_scales_the_ith_smallest_by_m_over_i_from_the_top_down():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4/1, 4/2, 4/3, 4/4 = 0.02, 0.02, 0.04, 0.04; minima from the top keep them
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_the_mde_for_many_seeds_approaches_the_normal_formula():
    # n = 200, sd 1: (t_0.95,199 + t_0.80,199) / sqrt(200) = (1.6525 + 0.8434) / 14.1421 = 0.17649 (t tables); the
    # noncentral t lies within a fraction of a percent of it
    assert minimum_detectable_effect(1.0, 200) == pytest.approx(0.17649, rel=0.005)


def test_the_mde_for_three_seeds_is_found_eight_times_in_ten_by_simulation():
    # no closed form at 2 df: simulate the experiment at a true gain equal to the MDE and count the rejections
    sd, n = 0.01, 3
    mde = minimum_detectable_effect(sd, n)
    assert power(mde, sd, n) == pytest.approx(0.80, abs=1e-6)
    gains = np.random.default_rng(0).normal(mde, sd, size=(20000, n))
    t = gains.mean(axis=1) / (gains.std(axis=1, ddof=1) / math.sqrt(n))
    assert (t > t2_ppf(0.95)).mean() == pytest.approx(0.80, abs=0.01)


def test_seeds_needed_is_the_fewest_whose_mde_reaches_the_effect():
    sd, effect = 0.01, 0.01
    needed = seeds_needed(sd, effect)
    assert minimum_detectable_effect(sd, needed) <= effect < minimum_detectable_effect(sd, needed - 1)
    assert seeds_needed(1.0, 1e-6) is None  # beyond MAX_SEEDS


@pytest.mark.parametrize("sd, effect, alike", [(0.8, 0.5, False), (0.3, 0.9, False), (0.8, 0.5, True),
                                                (0.1, 0.03, True), (0.0, 0.5, False)])
def test_seeds_needed_agrees_with_counting_up_the_mde(sd, effect, alike):
    mde = equivalence_mde if alike else minimum_detectable_effect
    first = next(n for n in range(2, 200) if mde(sd, n) <= effect)   # the definition, one seed count at a time
    assert seeds_needed(sd, effect, alike=alike) == first


# --- verdicts on synthetic runs with a known truth ---------------------------------------------------------------

def test_a_large_effect_is_reproduced():
    kd = [s - 0.03 + e for s, e in zip(STUDENT, [0.001, -0.001, 0.0, 0.002, -0.002])]
    verdict = judge(CLAIM, runs_of(kd=kd, student=STUDENT))
    assert verdict.verdict == REPRODUCED
    assert verdict.gain == pytest.approx(0.03) and verdict.gain_lower_bound > 0


def test_a_null_effect_with_a_tight_interval_is_not_reproduced():
    kd = [s + e for s, e in zip(STUDENT, [0.0005, -0.0005, 0.0, 0.0003, -0.0003])]
    verdict = judge(CLAIM, runs_of(kd=kd, student=STUDENT))
    # SESOI: half the default 10% of the student's mean error 0.204 = 0.0102; the upper bound is near 0
    assert verdict.sesoi == pytest.approx(0.0102)
    assert verdict.gain_upper_bound < verdict.sesoi and verdict.verdict == NOT_REPRODUCED


def test_a_noisy_effect_is_inconclusive_and_reports_its_mde_and_the_seeds_it_would_take():
    kd = [s + e for s, e in zip(STUDENT, [-0.03, 0.02, -0.04, 0.03, -0.01])]
    verdict = judge(CLAIM, runs_of(kd=kd, student=STUDENT))
    gains = -np.array([-0.03, 0.02, -0.04, 0.03, -0.01])
    assert verdict.verdict == INCONCLUSIVE
    assert verdict.mde == pytest.approx(minimum_detectable_effect(gains.std(ddof=1), 5))
    assert verdict.mde > verdict.sesoi and verdict.seeds_needed > 5
    assert "inconclusive" in discussion([verdict]) and f"about {verdict.seeds_needed} seeds" in discussion([verdict])


def test_a_failed_precondition_is_not_testable_and_left_out_of_holm():
    kd = [s - 0.03 for s in STUDENT]
    runs = runs_of(kd=kd, student=STUDENT, teacher=[s - 0.001 for s in STUDENT])  # the teacher barely leads
    needs = Claim("kd beats student", better="kd", worse="student", preconditions=(Precondition("teacher", "student"),))
    other = Claim("kd beats student again", better="kd", worse="student")
    untestable, tested = judge_all([needs, other], runs)
    assert untestable.verdict == NOT_TESTABLE and math.isnan(untestable.p_adjusted)
    outcome = untestable.preconditions[0]
    # lead 0.001 against 5% of the student's mean 0.204 = 0.0102
    assert outcome["passed"] is False and outcome["lead"] == pytest.approx(0.001)
    assert outcome["needed"] == pytest.approx(0.0102)
    assert tested.p_adjusted == tested.p_value  # Holm over the one claim tested
    assert "not testable here" in discussion([untestable])


def test_a_network_that_fits_its_training_set_passes_and_one_that_does_not_makes_the_claim_untestable():
    runs = runs_of(kd=[s - 0.03 for s in STUDENT], student=STUDENT)
    runs["train_error"] = [0.0] * 5 + [0.004, 0.0, 0.006, 0.0, 0.0]   # kd's, then the student's: mean 0.002
    fitted = judge(Claim("kd beats student", better="kd", worse="student", preconditions=(Fits("student"),)), runs)
    outcome = fitted.preconditions[0]
    assert outcome["passed"] is True and outcome["lead"] == pytest.approx(0.01 - 0.002)
    assert fitted.verdict == REPRODUCED
    assert "student fits its training set (training error at most 1%): training error 0.20%, held" in \
        verdict_rows([fitted])[0]["notes"]
    runs["train_error"] = [0.0] * 5 + [0.05] * 5
    underfit = judge(Claim("kd beats student", better="kd", worse="student", preconditions=(Fits("student"),)), runs)
    assert underfit.verdict == NOT_TESTABLE and underfit.preconditions[0]["lead"] == pytest.approx(-0.04)
    assert "training error 5.00%, failed" in discussion([underfit])


def test_fits_names_the_measure_when_the_runs_record_no_training_error():
    with pytest.raises(KeyError, match="TrainingError"):
        judge(Claim("kd beats student", better="kd", worse="student", preconditions=(Fits("student"),)),
              runs_of(kd=STUDENT, student=STUDENT))


def test_holm_within_the_paper_decides_the_verdict():
    # gains 0.010, 0.014, 0.018: mean 0.014, sd 0.004, t = 3.5 sqrt(3) = 6.0622, p = 1/2 - 6.0622 / (2 sqrt(38.75))
    # = 0.01308: reproduced alone; four such claims in one paper: Holm gives each 4 x 0.01308 = 0.0523, not below 0.05
    runs = runs_of(kd=[0.190, 0.186, 0.182], student=[0.2, 0.2, 0.2])
    claims = [Claim(f"claim {i}", better="kd", worse="student") for i in range(4)]
    alone = judge(claims[0], runs)
    assert alone.p_value == pytest.approx(0.01308, abs=1e-5) and alone.verdict == REPRODUCED
    together = judge_all(claims, runs)
    assert [v.p_adjusted for v in together] == pytest.approx([0.0523] * 4, abs=1e-4)
    assert {v.verdict for v in together} == {INCONCLUSIVE}


def test_the_sesoi_is_half_the_papers_relative_effect_on_our_compared_arm():
    claim = Claim("kd beats student", better="kd", worse="student", paper=(1.90, 0.65), source="MNIST")
    verdict = judge(claim, runs_of(kd=[0.16, 0.16, 0.16], student=[0.17, 0.17, 0.17]))
    # (1.90 - 0.65) / 1.90 = 0.657895; half: 0.328947; of our student's 0.17: 0.0559211
    assert verdict.sesoi == pytest.approx(0.0559211, rel=1e-5)
    assert "66%" in verdict.sesoi_reason and "MNIST" in verdict.sesoi_reason


def test_higher_is_better_metrics_flip_the_sign():
    claim = Claim("rkd has more recall", better="rkd", worse="triplet", metric="recall_at_1", lower_is_better=False)
    verdict = judge(claim, runs_of("recall_at_1", rkd=[0.70, 0.72, 0.71], triplet=[0.60, 0.61, 0.60]))
    assert verdict.verdict == REPRODUCED and verdict.gain == pytest.approx(0.1066667, rel=1e-5)


def test_one_seed_is_inconclusive_and_smoke_is_not_evaluated():
    assert judge(CLAIM, runs_of(kd=[0.1], student=[0.2])).verdict == INCONCLUSIVE
    assert judge(CLAIM, runs_of(kd=[0.1, 0.1], student=[0.2, 0.3]), evaluated=False).verdict == NOT_EVALUATED


def test_only_seeds_run_by_both_arms_are_paired():
    assert judge(CLAIM, runs_of(kd=[0.1, 0.1, 0.1], student=[0.2, 0.2])).seeds == 2


def test_a_claim_naming_a_missing_arm_says_which_arms_exist():
    with pytest.raises(KeyError, match="names arm 'fitnet'.*'kd', 'student'"):
        judge(Claim("x", better="fitnet", worse="student"), runs_of(kd=[0.1], student=[0.2]))


# --- margins: approaches, alike ------------------------------------------------------------------------------------

def test_a_margin_turns_beats_into_approaches_or_beats_with_the_margin_as_its_sesoi():
    runs = runs_of(fitnet=[0.105, 0.106, 0.104], teacher=[0.100, 0.100, 0.100])
    within = judge(Claim("within 2 points", better="fitnet", worse="teacher", margin=0.02), runs)
    # the gain is the plain advantage, -0.005, whatever the margin; H0: gain <= -0.02
    assert within.verdict == REPRODUCED and within.gain == pytest.approx(-0.005) and within.sesoi == -0.02
    beyond = judge(Claim("within 0.1 point", better="fitnet", worse="teacher", margin=0.001), runs)
    assert beyond.gain_upper_bound < -0.001 and beyond.verdict == NOT_REPRODUCED


ALIKE = Alike("kd and student are alike", first="kd", second="student", margin=0.5)


def test_alike_arms_within_the_margin_are_reproduced_with_the_tost_p_value_and_their_difference():
    # differences 0.1, 0, -0.1: each one-sided test sees gains 0.4, 0.5, 0.6 (mean 0.5, sd 0.1): t = 5 sqrt(3)
    verdict = judge(ALIKE, runs_of(kd=[1.1, 1.0, 0.9], student=[1.0, 1.0, 1.0]))
    assert verdict.verdict == REPRODUCED
    assert verdict.p_value == pytest.approx(t2_sf(5 * math.sqrt(3)), rel=1e-6)
    assert verdict.gain == pytest.approx(0.0) and verdict.sesoi == 0.5  # the difference and the margin, side by side
    row = verdict_rows([verdict])[0]
    assert row["gain [95% bounds]"].startswith("difference +0.00") and row["SESOI"] == "margin ±50.00"  # in % points


def test_arms_further_apart_than_the_margin_are_not_alike():
    verdict = judge(ALIKE, runs_of(kd=[1.6, 1.7, 1.8], student=[1.0, 1.0, 1.0]))
    assert verdict.gain_lower_bound > 0.5 and verdict.verdict == NOT_REPRODUCED


def test_alike_with_too_much_spread_is_inconclusive():
    assert judge(ALIKE, runs_of(kd=[1.4, 0.6, 1.3], student=[1.0, 1.0, 1.0])).verdict == INCONCLUSIVE


# --- recovers: a share of what was lost ----------------------------------------------------------------------------

def test_recovering_more_than_half_is_a_gain_over_the_halfway_point():
    runs = runs_of(omit=[0.160, 0.162, 0.158], full=[0.140, 0.141, 0.139], bias=[0.146, 0.147, 0.144])
    claim = Recovers("bias recovers most", better="bias", lost_from="omit", lost_to="full", share=0.5,
                     paper_share=0.75)
    verdict = judge(claim, runs)
    # per seed: recovered - half the loss = (0.014 - 0.010, 0.015 - 0.0105, 0.014 - 0.0095) = 0.004, 0.0045, 0.0045
    assert verdict.gain == pytest.approx(0.0043333, rel=1e-4)
    # SESOI: half of (0.75 - 0.5) of the mean loss 0.020 = 0.0025
    assert verdict.sesoi == pytest.approx(0.0025)
    # recovered 0.014333 of 0.020 lost: 72%
    assert "recovers 72% of the 2.00 points lost" in verdict.notes[0]
    assert verdict.verdict == REPRODUCED


# --- preconditions on validation data ------------------------------------------------------------------------------

def test_a_precondition_is_checked_on_validation_when_the_runs_have_it_and_on_test_said_so_otherwise():
    claim = Claim("kd beats student", better="kd", worse="student", preconditions=(Precondition("teacher", "student"),))
    runs = runs_of(kd=[0.15, 0.15], student=[0.2, 0.2], teacher=[0.1, 0.1])
    on_test = judge(claim, runs).preconditions[0]
    assert on_test["checked_on"] == "checked on test: these runs predate validation metrics"
    # on validation the teacher leads by 0.001 only, though it leads by 0.1 on test
    validation = runs.assign(val_error=[0.15, 0.15, 0.2, 0.2, 0.199, 0.199])
    on_validation = judge(claim, validation)
    assert on_validation.preconditions[0]["checked_on"] == "validation"
    assert on_validation.verdict == NOT_TESTABLE


# --- diverged runs ------------------------------------------------------------------------------------------------

def test_a_chance_level_or_infinite_run_is_diverged():
    runs = pd.DataFrame({"arm": ["a", "b", "c", "d"], "seed": [0, 0, 0, 0],
                         "test_error": [0.2, 0.9, 0.2, math.nan], "loss": [1.0, 1.0, math.inf, 1.0],
                         "test_accuracy": [0.8, 0.1, 0.8, 0.1]})
    assert diverged(runs).to_list() == [False, True, True, True]


def test_claims_using_a_diverged_run_say_so_and_its_arms_row_is_flagged():
    runs = runs_of(kd=[0.15, 0.90, 0.15], student=[0.2, 0.2, 0.2])
    verdict = judge(CLAIM, runs)
    assert verdict.notes == ["diverged, kept in the test: kd seed 1"]
    table = mark_diverged([{"arm": "kd", "error": "40"}, {"arm": "student", "error": "20"}], runs)
    assert [row["diverged"] for row in table] == ["seed 1", ""]
    assert mark_diverged([{"arm": "student"}], runs_of(student=[0.2])) == [{"arm": "student"}]


def test_every_verdict_row_shows_both_means_the_gain_its_bounds_the_sesoi_the_mde_and_both_p_values():
    row = verdict_rows([judge(CLAIM, runs_of(kd=[0.15, 0.16, 0.14], student=[0.2, 0.2, 0.2]))])[0]
    assert row["arm (mean)"] == "kd 15.00" and row["compared with (mean)"] == "student 20.00"
    assert row["gain [95% bounds]"] == "+5.00 [+3.31, +6.69]"  # 5 -+ 2.919986 x 1 / sqrt 3 points
    assert row["SESOI"] == "+1.00" and set(row) >= {"MDE (80%)", "p", "p (Holm)", "seeds", "verdict"}


def test_a_verdict_on_its_threshold_says_so():
    # the Holm example above: adjusted p 0.0523 lies within a factor 1.25 of 0.05 (0.04 .. 0.0625)
    runs = runs_of(kd=[0.190, 0.186, 0.182], student=[0.2, 0.2, 0.2])
    together = judge_all([Claim(f"claim {i}", better="kd", worse="student") for i in range(4)], runs)
    assert "on a threshold: the adjusted p is within a factor 1.25 of 0.05" in together[0].notes
    # gains 0, -+0.012, -+0.006: mean 0, sd sqrt(0.00036 / 4) = 0.009487, upper bound 2.1318 x 0.009487 / sqrt 5
    # = 0.009045 (t_0.95 with 4 df from tables) against the SESOI 0.0102: below it, by 11%
    kd = [s + e for s, e in zip(STUDENT, [0.0, 0.012, -0.012, 0.006, -0.006])]
    verdict = judge(CLAIM, runs_of(kd=kd, student=STUDENT))
    assert verdict.gain_upper_bound == pytest.approx(0.009045, abs=1e-6) and verdict.verdict == NOT_REPRODUCED
    assert "on a threshold: the upper bound is within 25% of the SESOI" in verdict.notes
    assert not any("threshold" in note for note in judge(CLAIM, runs_of(kd=[0.1] * 3, student=[0.2] * 3)).notes)


def test_an_effect_ruled_out_at_a_p_just_above_alpha_is_on_a_threshold_too():
    # gains 0.004 + (0, +-0.005, +-0.0035): sd 0.0043157, t = 0.004 / (0.0043157 / sqrt 5) = 2.0725, between
    # t_0.9375 = 1.9357 and t_0.95 = 2.1318 (4 df), so p lies in 0.05 .. 0.0625; the upper bound 0.004 + 2.1318 x
    # 0.0019300 = 0.008115 is below the SESOI 0.0102: not reproduced, one rerun from reproduced
    gains = [0.004 + e for e in (0.0, 0.005, -0.005, 0.0035, -0.0035)]
    verdict = judge(CLAIM, runs_of(kd=[s - g for s, g in zip(STUDENT, gains)], student=STUDENT))
    assert verdict.verdict == NOT_REPRODUCED and 0.05 < verdict.p_adjusted < 0.0625
    assert verdict.gain_upper_bound == pytest.approx(0.008115, abs=1e-6)
    assert "on a threshold: the adjusted p is within a factor 1.25 of 0.05" in verdict.notes


def test_judging_claims_imports_no_scipy_stats():
    # every notebook's kernel judges its claims: scipy.stats and scipy.optimize would cost each one 0.8 s to import
    check = "import sys, kdrepro.claims; print(sorted({'scipy.stats', 'scipy.optimize'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True).stdout == "[]\n"
