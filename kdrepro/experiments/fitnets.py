"""Romero et al. 2015, "FitNets: Hints for Thin Deep Nets" (arXiv 1412.6550).

Feature-based, offline, in two stages. Stage 1 trains the thin-deep student's layers up to a middle ("guided")
layer, through a regressor, to predict the wide teacher's middle ("hint") layer; stage 2 trains the whole
student by knowledge distillation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import matplotlib.pyplot as plt
import pandas as pd
from torch import nn

from kdrepro.arms import Arm, Stage
from kdrepro.claims import Claim, Precondition
from kdrepro.data import Data
from kdrepro.experiment import Run, at_seeds
from kdrepro.experiments import vision
from kdrepro.experiments.vision import Pair, describe
from kdrepro.measures import Classification
from kdrepro.objectives.feature import Hints, HintsWithLabels
from kdrepro.objectives.response import ResponseKD
from kdrepro.paper import Comparison, Paper
from kdrepro.tables import mean_std, runs_by_arm
from kdrepro.train import Recipe

PAPER = Paper("fitnets", "Romero et al. 2015: FitNets: Hints for Thin Deep Nets",
              "02_fitnets.ipynb", transferred="feature", scheme="offline",
              comparison=Comparison("FitNets", "student", ("kd", "fitnet"), "test_error"))


@dataclass(frozen=True)
class HintLayers:
    """Where the hint is read and where the student is guided."""

    hint: str                       # the teacher's module (its middle layer)
    guided: str                     # the student's module (its middle layer)
    activation: str | None          # the hint layer's non-linearity, which the regressor ends with


@dataclass(frozen=True)
class Protocol:
    seeds: tuple[int, ...]
    pair: Pair                      # the paper's experiment: wide-shallow teacher, thin-deep student
    hints: HintLayers
    hint_epochs: int                # of the student recipe's epochs, stage 1; stage 2 gets the rest (same budget)
    temperature: float = 3.0        # FitNets' tau
    soft_weight: float = 2.5        # FitNets' lambda, the mean of its linear decay from 4 to 1
    joint_weight: float = 100.0     # the one-stage variant's hint weight (CIFAR-100 code, mean squared error)
    joint_arm: bool = True          # run the one-stage variant beside the pair (no claim needs it: an extra)
    benchmark: tuple[tuple[Pair, HintLayers], ...] = ()   # the CIFAR-100 benchmark's pairs, one-stage as it runs them
    benchmark_temperature: float = 4.0   # the benchmark's KD: T = 4, weight 0.1 on labels
    benchmark_hard_weight: float = 0.1

    @property
    def hard_weight(self) -> float:
        """FitNets' KD, H(y, P_S) + lambda H(P_T^tau, P_S^tau), in the package's form h CE + (1 - h) tau^2 KL:
        the gradients keep the paper's ratio when h = 1 / (1 + lambda / tau^2) (the overall factor
        1 + lambda / tau^2 is a learning-rate scale)."""
        return 1 / (1 + self.soft_weight / self.temperature**2)


# the thin-deep student: 18 convolutions of 4 to 8 channels, no batch norm, hard to train by backprop in the budget
THIN_DEEP = {"family": "plain_cnn", "stages": [[4] * 6, [8] * 6, [8] * 6]}
CPU_PAIR = Pair("fitnets-fashion", "fashion_mnist", train_size=3500, val_size=5000, image_size=14,
                teacher={"family": "plain_cnn", "stages": [[32], [64], [128]], "batch_norm": True},
                student=THIN_DEEP,
                teacher_recipe=Recipe(epochs=10, batch_size=64, lr=0.05, weight_decay=5e-4),
                # 0.05 sent the thin-deep student (no batch norm) to NaN in its first epoch; 0.02 for every arm,
                # and every student's gradient clipped at norm 5 (a diverged seed of the earlier protocol)
                student_recipe=Recipe(epochs=10, batch_size=64, lr=0.02, weight_decay=5e-4, clip_grad_norm=5.0))

# CIFAR-100 benchmark recipe (RepDistiller README): 240 epochs, SGD 0.05, x0.1 at 150/180/210, wd 5e-4, batch 64
BENCHMARK_RECIPE = Recipe(epochs=240, batch_size=64, lr=0.05, schedule="step", milestones=(150, 180, 210),
                          weight_decay=5e-4, crop_padding=4, flip=True)
BENCHMARK = (
    (Pair("resnet32x4-resnet8x4", "cifar100", None, 0, "resnet32x4", "resnet8x4", BENCHMARK_RECIPE, BENCHMARK_RECIPE,
          download=True), HintLayers("layer2", "layer2", "relu")),
    (Pair("wrn_40_2-wrn_16_2", "cifar100", None, 0, "wrn_40_2", "wrn_16_2", BENCHMARK_RECIPE, BENCHMARK_RECIPE,
          download=True), HintLayers("block2", "block2", None)),
)

PROFILES = {
    "smoke": Protocol(seeds=(0,), pair=replace(CPU_PAIR, train_size=600, val_size=200, test_size=500,
                                               teacher_recipe=replace(CPU_PAIR.teacher_recipe, epochs=1),
                                               student_recipe=replace(CPU_PAIR.student_recipe, epochs=2)),
                      hints=HintLayers("relu2", "relu12", "relu"), hint_epochs=1, joint_arm=False),
    "cpu": Protocol(seeds=(0, 1, 2, 3, 4), pair=CPU_PAIR, hints=HintLayers("relu2", "relu12", "relu"), hint_epochs=3,
                    joint_arm=False),
    # CIFAR-10 as published: a wide 5-layer teacher (ReLU in place of maxout) and FitNet 1 (11 layers, thin)
    "paper": Protocol(seeds=(0, 1, 2), pair=Pair(
        "fitnets-cifar10", "cifar10", train_size=None, val_size=5000,
        teacher={"family": "plain_cnn", "stages": [[96, 96], [192, 192], [192]], "batch_norm": True},
        student="fitnet1",
        teacher_recipe=Recipe(epochs=100, lr=0.05, weight_decay=5e-4, crop_padding=4, flip=True),
        student_recipe=Recipe(epochs=100, lr=0.01, weight_decay=5e-4, crop_padding=4, flip=True),
        download=True), hints=HintLayers("relu3", "relu6", "relu"), hint_epochs=20, benchmark=BENCHMARK),
}

# hints and KD can only pass on what the teacher does better than the thin-deep student (see kdrepro.claims)
TEACHER_LEADS = (Precondition("teacher", "student"),)
# hints address a student that backprop alone trains badly: from scratch it trails its teacher by at least a fifth
# of its own error (the paper's MNIST student, 1.90% against the teacher's 0.55%, trails by seven tenths)
HARD_FROM_SCRATCH = (Precondition("teacher", "student", lead=0.2),)
MNIST = "MNIST test error %, Table 4"
CLAIMS = [
    Claim("The hint-trained thin-deep student beats the same student trained by backprop alone, in as many updates "
          "(hint updates counted)", better="fitnet", worse="student", paper=(1.90, 0.51), source=MNIST,
          preconditions=HARD_FROM_SCRATCH),
    Claim("The hint-trained student beats the same student trained by KD alone, in as many updates (hint updates "
          "counted)", better="fitnet", worse="kd", paper=(0.65, 0.51), source=MNIST,
          preconditions=HARD_FROM_SCRATCH),
    Claim("The hint-trained student approaches its wider teacher: within one point of test error, or better",
          better="fitnet", worse="teacher", margin=0.01, preconditions=TEACHER_LEADS),
    Claim("KD alone beats backprop for the thin-deep student (paper, MNIST: 1.9% -> 0.65%)",
          better="kd", worse="student", paper=(1.90, 0.65), source=MNIST, preconditions=TEACHER_LEADS),
]


MEASURE = Classification(multiply_adds=True)   # Table 5 reports multiply-adds beside accuracy


def arms(p: Protocol) -> dict[str, Arm]:
    """Every arm of the paper's experiment, at seed 0 (`Arm.at` moves one to another seed). The FitNet's stage 1
    trains the layers up to the guided one and a regressor on hints alone (the hint loss averaged over elements,
    see DEPARTURES); its stage 2 is the KD arm's objective. The two stages share the recipe's epochs, so the FitNet
    trains no longer than any other arm (as many optimiser updates, the hint stage's counted), and its KD stage
    starts from the hint-trained weights, on the KD arm's batch order (`train_arm`). The one-stage variant is an
    extra, run where the protocol asks for it."""
    epochs = p.pair.student_recipe.epochs
    if not 0 < p.hint_epochs < epochs:
        raise ValueError(f"hint_epochs={p.hint_epochs} must leave both stages at least one of the {epochs} epochs")
    kd = ResponseKD(p.temperature, p.hard_weight)
    hints = Hints(p.hints.guided, p.hints.hint, p.hints.activation, reduction="mean")
    joint = {"fitnet_joint": one_stage(p.hints, p.joint_weight)} if p.joint_arm else {}
    return vision.pair_arms(p.pair, {"kd": kd,
                                     "fitnet": (Stage(hints, p.hint_epochs), Stage(kd, epochs - p.hint_epochs)),
                                     **joint})


def benchmark_arms(p: Protocol) -> list[tuple[Pair, list[Arm]]]:
    """Each CIFAR-100 benchmark pair with its arms (teacher, student, KD at the benchmark's T and weight, FitNets
    in one stage as the benchmark runs it), named "<pair> <arm>"."""
    kd = ResponseKD(p.benchmark_temperature, p.benchmark_hard_weight)
    return [(pair, list(vision.pair_arms(pair, {"kd": kd, "fitnet_joint": one_stage(layers, p.joint_weight)},
                                         prefix=f"{pair.name} ").values())) for pair, layers in p.benchmark]


def one_stage(layers: HintLayers, weight: float) -> HintsWithLabels:
    """The one-stage variant: labels and hints together (mean squared error), a 1x1 regressor."""
    return HintsWithLabels(layers.guided, layers.hint, weight, layers.activation, reduction="mean")


def layers(model: nn.Module) -> int:
    """Weight layers (convolutions and linear layers), as FitNets counts depth."""
    return sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())


def datasets(p: Protocol) -> dict[str, Data]:
    return vision.datasets(p.pair, p.benchmark)


def runs(p: Protocol) -> list[Run]:
    """Every run the notebook makes, cell by cell: what `python -m kdrepro plan` lists and `work` trains."""
    return at_seeds(arms(p).values(), p.seeds, MEASURE) + [
        run for pair, pair_arms in benchmark_arms(p) for run in at_seeds(pair_arms, p.seeds, MEASURE, pair.name)]


# --- the notebook's tables and figures --------------------------------------------------------------------------

PAPER_MNIST = {  # Romero et al. 2015, Table 4 (MNIST test error)
    "teacher": "0.55% (maxout, ~361K params)", "student": "1.90% (~30K params)", "kd": "0.65%",
    "fitnet": "0.51%", "fitnet_joint": "not in the paper",
}
PAPER_CIFAR10 = {  # Romero et al. 2015, Table 5 (CIFAR-10 accuracy)
    "teacher": "90.18% (5 layers, ~9M params, ~725M mults)", "student": "not reported",
    "kd": "not reported", "fitnet": "89.01% (FitNet 1: 11 layers, ~250K params, ~30M mults)",
    "fitnet_joint": "not in the paper",
}
# CIFAR-100 top-1 % (RepDistiller README, last epoch); FitNet there is the one-stage variant
PAPER_BENCHMARK = {
    "resnet32x4-resnet8x4": {"teacher": 79.42, "student": 72.50, "kd": 73.33, "fitnet_joint": 73.50},
    "wrn_40_2-wrn_16_2": {"teacher": 75.61, "student": 73.26, "kd": 74.92, "fitnet_joint": 73.58},
}
WHAT = {"teacher": "teacher (wide, shallow)", "student": "student, backprop on labels",
        "kd": "student, KD", "fitnet": "FitNet: hints, then KD", "fitnet_joint": "extra: hints + CE in one stage"}


def results_table(runs: pd.DataFrame, pair: Pair, depth: dict[str, int], dataset: str) -> list[dict[str, object]]:
    """Table 5's shape: layers, parameters and multiply-adds beside the test error, with the paper's numbers."""
    paper = PAPER_MNIST if dataset != "cifar10" else PAPER_CIFAR10
    table = []
    for arm, rows in runs_by_arm(runs, WHAT):
        what = WHAT[arm]
        architecture = pair.teacher if arm == "teacher" else pair.student
        table.append({"arm": arm, "what": what, "network": describe(architecture),
                      "layers": depth["teacher" if arm == "teacher" else "student"],
                      "parameters": f"{rows['parameters'].iloc[0]:,}",
                      "multiply-adds": f"{rows['multiply_adds'].iloc[0] / 1e6:.2f}M",
                      "test error %": mean_std(rows["test_error"], 100), "seeds": len(rows),
                      f"paper ({'CIFAR-10, Table 5' if dataset == 'cifar10' else 'MNIST, Table 4'})": paper[arm]})
    return table


def benchmark_table(runs: pd.DataFrame, pairs) -> list[dict[str, object]]:
    """The CIFAR-100 benchmark's pairs: our top-1 accuracy beside RepDistiller's."""
    return vision.benchmark_table(runs, [pair for pair, _ in pairs], PAPER_BENCHMARK)


def plot_size_and_error(runs: pd.DataFrame) -> plt.Figure:
    """Test error against parameters: the thin-deep student's arms share one size, far left of the teacher."""
    figure, ax = plt.subplots(figsize=(6, 4))
    for i, arm in enumerate(WHAT):
        rows = runs[runs["arm"] == arm]
        if rows.empty:
            continue
        errors = rows["test_error"] * 100
        ax.errorbar(rows["parameters"].iloc[0] * (1 + 0.06 * i), errors.mean(),
                    yerr=errors.std() if len(rows) > 1 else 0, fmt="o", ms=8, capsize=4, color=f"C{i}",
                    label=WHAT[arm])
    ax.set(xscale="log", xlabel="parameters (log scale; the student's arms spread apart to be seen)",
           ylabel="test error %", title="Size and error (mean ± std over seeds)")
    ax.legend(fontsize=8)
    return figure


DEPARTURES = """
- Data and scale (profile `cpu`): Fashion-MNIST at 14x14 pixels (each pixel the mean of a 2x2 block, a quarter of
  the convolutions' cost), 3,500 training images drawn per seed, 10 epochs for every network. The teacher is a
  wide, shallow CNN (3 convolutions of 32, 64, 128 channels, with batch norm); the student a thin, deep one (18
  convolutions of 4 to 8 channels, no batch norm). The paper's MNIST pair (Table 4) is the closest in kind: a
  maxout teacher of ~361K parameters, a student of ~30K.
- The student is thinner and deeper than the earlier protocol's (9 convolutions of 8 to 16 channels), which trained
  fine from scratch (17.0% test error against the teacher's 13.8%), leaving hints nothing to fix. Hints are claimed
  for students that backprop trains badly, so the claims against the scratch and KD students declare that
  precondition: the thin-deep student from scratch trails the teacher by at least a fifth of its own error, on
  validation data (at 20 epochs on 5,000 images, one validation seed: 21.8% error, training loss still 0.45).
- 3,500 images and 10 epochs (from 5,000 and 20), and no one-stage variant in profile `cpu` (no claim reads it; it
  stays in profile `paper`'s benchmark): they pay for the deeper student and for the seeds the pilot asked for.
- Sized by a pilot (seeds 100-102, validation error; results/cpu/pilots/fitnets.csv), run again for the one shared
  teacher: SDs of the paired gains 5.3 (FitNet vs scratch), 4.3 (FitNet vs KD), 4.6 (FitNet vs teacher) and 1.2
  points (KD vs scratch); the teacher led the scratch student by more than a fifth. Five seeds give MDEs of 7.2,
  5.8, 6.3 and 1.6 points against SESOIs of 9.0, 2.4, 1.0 (the margin) and 8.1: the FitNet-vs-KD claim would need
  22 seeds and the approach-the-teacher claim 133, beyond the budget. (The first pilot, a teacher per seed and
  4,000 images: SDs 3.9, 3.0, 2.9 and 0.9 points.)
- ReLU instead of maxout units, global average pooling and one linear layer as the head; no batch normalisation in
  the thin-deep student (the paper predates it, and it would hide the optimisation difficulty hints address).
- Optimiser: SGD with momentum 0.9, learning rate 0.02 with a cosine schedule, weight decay 5e-4, batch 64 (the
  paper: RMSProp, learning rate 0.005), the same for every student arm (0.05 for the teacher; at 0.05 the
  thin-deep student's loss became NaN in its first epoch). Every student arm's gradient is clipped at a global
  norm of 5: in the earlier protocol one seed of the one-stage variant diverged (chance accuracy) and one KD seed
  ended 3 points behind the others, both a step too large for a network without batch norm; the clip is the
  same for every student arm, so no arm is favoured.
- The hint loss is averaged over the hint's elements instead of summed as in eq. 3: the same minimiser, but a sum
  over the hint's 3,136 elements (64 x 7 x 7) needs an SGD learning rate thousands of times smaller (the paper's
  RMSProp is blind to that scale).
- Budget: the FitNet's two stages share the other arms' epochs (3 of hints, 7 of KD, against the KD and scratch
  students' 10): as many optimiser updates, the hint stage's counted, so no arm trains longer. The claims say so.
  Both stages train on the arm's own stream: the KD stage sees the KD arm's batches in the KD arm's order.
- KD (the KD arm and the FitNet's stage 2 alike): the paper's H(y, P_S) + lambda H(P_T^tau, P_S^tau) with tau = 3
  and lambda fixed at 2.5, the mean of its linear decay from 4 to 1, written in the package's T^2-scaled form:
  weight 1 / (1 + lambda / tau^2) = 0.78 on labels, 0.22 on tau^2 KL. The FitNet and KD arms differ by the
  hints alone.
- The hint layer is the teacher's second convolution (its middle), the guided layer the end of the student's
  second stage; both are 7x7, so the paper's regressor rule N_g - k + 1 = N_h gives a 1x1 kernel here (the
  rule is implemented and tested for maps of different sizes).
- The one-stage variant (hints + CE together, a 1x1 regressor with batch norm, mean squared error weighted 100)
  is the form common in CIFAR-100 code, reported as a labelled extra; the benchmark's regressor is a 3x3
  convolution where ours is 1x1.
- The depth study of section 4.1 (plain backprop fails beyond a few layers at a fixed budget) is not run: it does
  not fit the notebook's time budget on two cores.
- One teacher (every profile), as the paper trains one: trained once, at seed 0 on that seed's training draw,
  and shared by every seed's students, so a verdict generalises over student seeds for this teacher. The
  earlier protocol trained a teacher per seed; the four it no longer trains cost 74 of its 396 worker-seconds
  at the last regeneration (profile `cpu`, one thread), which pay for the student seeds.
- Every number is the last epoch's, never the best epoch's.
"""
