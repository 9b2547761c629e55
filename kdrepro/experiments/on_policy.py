"""Agarwal et al. 2024, "On-Policy Distillation of Language Models: Learning from Self-Generated Mistakes" (GKD,
ICLR 2024, arXiv 2306.13649), on notebook 08's translation task.

Sequence-based, offline, on the student's own outputs: the frozen teacher of 08 grades, token by token, the
translations its student samples itself (generalised KD), instead of handing it fixed targets (Word-KD: the
references; Seq-KD: its own beam-search output). The divergence is GKD's generalised JSD, from forward KL
(beta = 0) to reverse KL (beta = 1, the choice of MiniLLM, Gu et al. 2024, and of the 2025 on-policy recipes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import matplotlib.pyplot as plt
import pandas as pd

from kdrepro.arms import Arm
from kdrepro.bleu_by_length import BleuByLength, bucket_names
from kdrepro.claims import Claim, Precondition
from kdrepro.experiment import Experiment, Run, at_seeds
from kdrepro.experiments import seqkd
from kdrepro.objectives.sequence import OnPolicyKD
from kdrepro.paper import Comparison, Paper
from kdrepro.tables import mean_std, runs_by_arm
from kdrepro.translation_task import TranslationTask

METHODS = ("word_kd", "seq_kd", "on_policy_fkl", "on_policy_rkl", "on_policy_jsd", "mixed")
COST_MATCHED = ("checkpoint", "seq_kd_more")   # with ON_POLICY: the same checkpoint, two ways to finish

PAPER = Paper("on_policy", "Agarwal et al. 2024: On-Policy Distillation of Language Models (GKD)",
              "09_on_policy.ipynb", transferred="sequence", scheme="offline",
              comparison=Comparison("On-policy", "baseline", METHODS, "bleu_beam1"))


@dataclass(frozen=True)
class Protocol:
    task: str                        # the profile of 08_seqkd whose task, teacher and Seq-KD data are reused
    seeds: tuple[int, ...]
    epochs: int                      # the last epochs of 08's budget, spent after the checkpoint (on-policy...)
    beta: float = 0.5                # the JSD arm's beta, and the mixed arm's
    mixed: float = 0.5               # the mixed arm's lambda: the share of its batches the student samples
    temperature: float = 1.0         # the student's sampling temperature (GKD samples at 1)
    length_edges: tuple[int, ...] = (6, 8)   # source-length buckets: upper edges in words, the last bucket open


PROFILES = {
    "smoke": Protocol("smoke", seeds=(0,), epochs=1, length_edges=(6, 8)),
    "cpu": Protocol("cpu", seeds=(0, 1, 2, 3, 4), epochs=2, length_edges=(6, 8)),
    "paper": Protocol("paper", seeds=(0, 1, 2), epochs=3, length_edges=(15, 30)),
}

# the on-policy student the claims name: reverse KL, chosen before any run (MiniLLM's and the 2025 recipes'
# divergence); the others are the divergence comparison's arms
ON_POLICY = "on_policy_rkl"
LEARNED = -0.5   # a student "has learned the task" when it trails the teacher by at most half the teacher's BLEU


def preconditions(*students: str) -> tuple[Precondition, ...]:
    """The teacher leads the baseline student (it has something to teach), and each student compared has learned
    the task (greedy validation BLEU at least half the teacher's): GKD distils students that already translate,
    and a comparison of students that have not learned it says nothing about the methods."""
    return (Precondition("teacher", "baseline"), *(Precondition(s, "teacher", lead=LEARNED) for s in students))


CLAIMS = [
    Claim("On-policy distillation (reverse KL) beats Word-KD, greedy", better=ON_POLICY, worse="word_kd",
          metric="bleu_beam1", lower_is_better=False, preconditions=preconditions(ON_POLICY, "word_kd")),
    Claim("On-policy distillation (reverse KL) beats Seq-KD, greedy", better=ON_POLICY, worse="seq_kd",
          metric="bleu_beam1", lower_is_better=False, preconditions=preconditions(ON_POLICY, "seq_kd")),
    Claim("Decoding greedily, on-policy reverse KL (mode-seeking) beats on-policy forward KL", better=ON_POLICY,
          worse="on_policy_fkl", metric="bleu_beam1", lower_is_better=False,
          preconditions=preconditions(ON_POLICY, "on_policy_fkl")),
    Claim("Decoding greedily, on-policy JSD(0.5) beats on-policy forward KL", better="on_policy_jsd",
          worse="on_policy_fkl", metric="bleu_beam1", lower_is_better=False,
          preconditions=preconditions("on_policy_jsd", "on_policy_fkl")),
    Claim("From one Seq-KD checkpoint, the last epochs on-policy (reverse KL) beat as many more of Seq-KD, greedy",
          better=ON_POLICY, worse="seq_kd_more", metric="bleu_beam1", lower_is_better=False,
          preconditions=preconditions(ON_POLICY, "seq_kd_more")),
    Claim("The on-policy student loses less BLEU from short to long sources than the Seq-KD student, greedy",
          better=ON_POLICY, worse="seq_kd", metric="bleu_drop_beam1", lower_is_better=True),
]


def base(p: Protocol) -> seqkd.Protocol:
    """Notebook 08's protocol of the same name: its task, sizes, recipe, teacher and Seq-KD data."""
    return seqkd.PROFILES[p.task]


def load(p: Protocol) -> TranslationTask:
    return seqkd.load(base(p))


def arms(p: Protocol) -> dict[str, Arm]:
    """Every arm, at seed 0. The teacher and the baseline, Word-KD and Seq-KD students are 08's own (`seqkd.arms`,
    from 08's cache when 08 ran). Every other student starts from one Seq-KD checkpoint per seed (08's Seq-KD
    student stopped `p.epochs` epochs short of 08's budget) and spends those last epochs on GKD's objective (Word-KD's
    arm with GKD's objective) or on more Seq-KD: every student makes 08's number of updates, from the same initial
    weights, in the same batch order; the on-policy arms and `seq_kd_more` differ only in their last epochs."""
    b = base(p)
    own = seqkd.arms(b)
    total = b.recipe.epochs
    if not 0 < p.epochs < total:
        raise ValueError(f"on_policy Protocol(epochs={p.epochs}): the on-policy epochs must be fewer than 08's "
                         f"{total} (the checkpoint trains the rest)")
    checkpoint = replace(own["seq_kd"], name="checkpoint", recipe=replace(b.recipe, epochs=total - p.epochs))
    last = replace(b.recipe, epochs=p.epochs)

    def on_policy(name: str, beta: float, share: float = 1.0) -> Arm:
        return replace(own["word_kd"], name=name, objective=OnPolicyKD(beta, share, p.temperature, b.max_len),
                       recipe=last, start=checkpoint)

    return {
        **{name: own[name] for name in ("teacher", "baseline", "word_kd", "seq_kd")},
        "on_policy_fkl": on_policy("on_policy_fkl", 0.0),
        "on_policy_rkl": on_policy("on_policy_rkl", 1.0),
        "on_policy_jsd": on_policy("on_policy_jsd", p.beta),
        "mixed": on_policy("mixed", p.beta, p.mixed),
        "checkpoint": checkpoint,
        "seq_kd_more": replace(own["seq_kd"], name="seq_kd_more", recipe=last, start=checkpoint),
    }


def measure(p: Protocol) -> BleuByLength:
    """Every arm's reading: BLEU greedy and with 08's beam, on validation and test, and by source length."""
    return BleuByLength((1, base(p).beam), base(p).max_len, p.length_edges)


def runs(p: Protocol) -> list[Run]:
    """Every run the notebook makes: the one teacher, then the students at every seed."""
    a = arms(p)
    return [Run(a["teacher"], measure(p))] + at_seeds(
        [a[name] for name in ("baseline", *METHODS, *COST_MATCHED)], p.seeds, measure(p))


def run_teacher(exp: Experiment, teacher: Arm, data: TranslationTask) -> None:
    """The teacher's run, recorded at every seed of the profile: one teacher (08's) grades every seed's students,
    and the claims' preconditions pair it with each seed's baseline."""
    for seed in exp.protocol.seeds:
        exp.record("teacher", seed, exp.run(teacher.at(seed), data, measure(exp.protocol)))


# --- the notebook's tables and figures --------------------------------------------------------------------------

def arm_descriptions(p: Protocol) -> dict[str, str]:
    last = f"the checkpoint, then {p.epochs} epochs"
    return {
        "teacher": "08's teacher, NLL on the references",
        "baseline": "NLL on the references",
        "word_kd": "Word-KD on the references (08's)",
        "seq_kd": "NLL on the teacher's beam-5 translations (08's Seq-KD)",
        "on_policy_fkl": f"{last} on-policy, forward KL (beta 0)",
        "on_policy_rkl": f"{last} on-policy, reverse KL (beta 1)",
        "on_policy_jsd": f"{last} on-policy, JSD (beta {p.beta:g})",
        "mixed": f"{last} of JSD (beta {p.beta:g}), {p.mixed:.0%} of batches on-policy, the rest the references",
        "checkpoint": f"Seq-KD, stopped {p.epochs} epochs short: the shared checkpoint",
        "seq_kd_more": f"{last} more of Seq-KD",
    }


def results_table(runs: pd.DataFrame, p: Protocol) -> list[dict[str, object]]:
    """One row per arm: test BLEU greedy and with beam 5 (mean ± std over seeds), the drop from short to long
    sources, the validation BLEU the pilot and the preconditions read."""
    described, beam = arm_descriptions(p), base(p).beam
    return [{"arm": arm, "what": described[arm], "BLEU greedy": mean_std(rows["bleu_beam1"], digits=1),
             f"BLEU beam {beam}": mean_std(rows[f"bleu_beam{beam}"], digits=1),
             "drop short -> long (greedy)": mean_std(rows["bleu_drop_beam1"], digits=1),
             "validation BLEU greedy": mean_std(rows["val_bleu_beam1"], digits=1), "seeds": len(rows)}
            for arm, rows in runs_by_arm(runs, described)]


def length_table(runs: pd.DataFrame, p: Protocol, beam: int = 1) -> list[dict[str, object]]:
    """Test BLEU of each source-length bucket, per arm (mean ± std over seeds)."""
    names = bucket_names(p.length_edges)
    return [{"arm": arm, **{f"{name} words": mean_std(rows[f"bleu_beam{beam}_len{name}"], digits=1)
                            for name in names}}
            for arm, rows in runs_by_arm(runs, arm_descriptions(p))]


def cost_table(exp: Experiment, arms: dict[str, Arm], data: TranslationTask) -> list[dict[str, object]]:
    """Each student's own training (after the checkpoint it starts from, if any) at the profile's first seed: its
    updates, its seconds from its training history, and the seconds per update."""
    seed, rows = exp.protocol.seeds[0], []
    for name in ("baseline", *METHODS, *COST_MATCHED):
        arm = arms[name].at(seed)
        seconds = sum(history.seconds for history in exp.histories(arm, data))
        updates = arm.recipe.epochs * steps_per_epoch(exp.protocol, data)
        rows.append({"arm": name, "starts from": "scratch" if arm.start is None else arm.start.name,
                     "updates": updates, "training seconds": f"{seconds:.1f}",
                     "ms per update": f"{1000 * seconds / updates:.0f}"})
    return rows


def plot_bleu_by_length(runs: pd.DataFrame, p: Protocol) -> plt.Figure:
    """Greedy test BLEU against source length, every student (mean ± std over seeds)."""
    names = bucket_names(p.length_edges)
    figure, ax = plt.subplots(figsize=(6.5, 4))
    for i, (arm, rows) in enumerate(runs_by_arm(runs, ("teacher", "baseline", *METHODS))):
        values = [rows[f"bleu_beam1_len{name}"] for name in names]
        ax.errorbar(range(len(names)), [v.mean() for v in values],
                    yerr=[v.std() if len(v) > 1 else 0 for v in values], marker="o", capsize=3, color=f"C{i}",
                    ls="--" if arm == "teacher" else "-", label=arm)
    ax.set_xticks(range(len(names)), [f"{name} words" for name in names])
    ax.set(xlabel="source length", ylabel="test BLEU, greedy", title="Does a student fall behind on long outputs?")
    ax.legend(fontsize=8)
    return figure


def plot_cost_matched(runs: pd.DataFrame, p: Protocol, steps_per_epoch: int) -> plt.Figure:
    """Greedy test BLEU against student updates: the shared Seq-KD checkpoint, then its last epochs of more
    Seq-KD or of on-policy distillation; a thin line per seed, the mean thick."""
    total = base(p).recipe.epochs
    steps = [(total - p.epochs) * steps_per_epoch, total * steps_per_epoch]
    start = runs[runs["arm"] == "checkpoint"].set_index("seed")["bleu_beam1"]
    figure, ax = plt.subplots(figsize=(6.5, 4))
    for colour, arm in (("C1", "seq_kd_more"), ("C2", ON_POLICY)):
        end = runs[runs["arm"] == arm].set_index("seed")["bleu_beam1"]
        for seed in end.index.intersection(start.index):
            ax.plot(steps, [start[seed], end[seed]], color=colour, alpha=0.3, lw=1)
        ax.plot(steps, [start.mean(), end.mean()], color=colour, lw=3, marker="o",
                label=arm_descriptions(p)[arm])
    ax.set(xlabel="student updates (optimiser steps)", ylabel="test BLEU, greedy",
           title="Same budget, same checkpoint: spend the last epochs how?")
    ax.legend(fontsize=8)
    return figure


def steps_per_epoch(p: Protocol, data: TranslationTask) -> int:
    return math.ceil(len(data.train) / base(p).recipe.batch_size)


DEPARTURES = """
- Task, teacher and data (every profile): notebook 08's (`kdrepro/experiments/seqkd.py`): its generated translation
  task (profile `cpu`) or corpus (profile `paper`), its one teacher, its students' size and recipe, its Seq-KD data.
  GKD distils T5 models (T5-XL teacher, T5-small to T5-large students) on WMT14 English->German and other tasks,
  starting each student from a supervised checkpoint. BLEU on the generated task is not comparable with WMT BLEU;
  the paper's translation results are plotted, not tabulated, so no number of it is copied here and every claim's
  smallest effect of interest is the project's default (half of a 10% relative change).
- Where the students start: every student makes 08's number of updates (profile `cpu`: 15 epochs of 63 updates).
  The baseline, Word-KD and Seq-KD students are 08's own, trained from scratch (from 08's cache when 08 ran). The
  on-policy students, the mixed one and `seq_kd_more` start from one checkpoint per seed, 08's Seq-KD student
  stopped `epochs` short of 08's budget (profile `cpu`: 13 epochs, then 2; `paper`: 10, then 3), and spend those
  last epochs on their own objective, with a fresh Adam and its own schedule. GKD starts from a checkpoint trained
  on the references; here it is trained on the teacher's translations (the order of today's recipes: off-policy
  distillation, then on-policy), because 08's reference-trained students are bimodal across seeds (some never
  learn the task in 08's budget) and an on-policy student must already translate for its samples to teach it.
  First tried here, and committed: every student from scratch for 2 epochs (126 updates); at seeds 0-4 no student
  learned the task (greedy BLEU 1 to 6 against the teacher's 62), so no comparison of methods was possible.
- Cost-matched pair: GKD's question, "from one checkpoint, more of the same or on-policy?", asked at the end of
  08's budget rather than at its half: half of it spent on-policy (7 epochs of sampling and a teacher pass per
  batch, for five arms at five seeds) would take several times the `cpu` budget. `seq_kd_more` and the reverse-KL
  on-policy student share the checkpoint and differ only in their last epochs; the claim that compares them is
  the one least confounded by the checkpoint's schedule (08's Seq-KD student anneals once over 15 epochs).
- Budget and seeds (profile `cpu`): one checkpoint (13 epochs of Seq-KD) and five late arms (2 epochs each) per
  seed, at five seeds; 08's teacher and students come from 08's runs. The pilot (seeds 100-102, validation only,
  `results/cpu/pilots/on_policy.csv`; every precondition held) puts the MDE at five seeds within the SESOI only for
  JSD against forward KL (SD of paired gains 1.3 BLEU); the others' paired SDs (2.5-4.8 BLEU, and 46 against
  Word-KD, whose students are bimodal as 08's) would need 8 to 60 seeds, beyond the budget: their rows say so
  where the verdict is inconclusive.
- Divergence and sampling: GKD's generalised JSD per token, averaged over every token of a batch up to each
  output's EOS; beta = 0 is the forward KL(teacher || student), beta = 1 the reverse KL(student || teacher) (the
  ends of GKD's JSD(beta) as the limits of JSD(beta) / beta and JSD(beta) / (1 - beta), as TRL's GKDTrainer
  documents its beta); JSD at beta = 0.5. The student samples at temperature 1 with no top-k or nucleus cut, up to
  08's longest output; sampling renormalises over the words a decoder can produce (padding and BOS excluded).
  No gradient flows through the sampling (as in GKD).
- The on-policy arm of the claims is reverse KL (chosen before any run); forward KL and JSD are the divergence
  comparison; the mixed arm samples half of its batches (GKD's lambda = 0.5) and takes the references for the
  rest, with JSD(0.5).
- Cost: an on-policy update samples a batch (one decoder step per word, without gradient) and runs the teacher
  over it; its student updates are counted like every other arm's, its extra compute is not matched.
- Preconditions: besides the teacher's lead over the baseline, every BLEU claim requires that both students it
  compares have learned the task (greedy validation BLEU at least half the teacher's), added after the first
  protocol's students (above) had not. The length claim has no such check
  (its metric is a difference of BLEU), so read it with the BLEU table.
- Exposure bias is read as the drop of greedy test BLEU from the shortest source-length bucket to the longest
  (profile `cpu`: 1-6, 7-8 and 9+ words), a view of it, not a measurement of it.
"""
