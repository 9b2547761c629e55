"""Zhang, Xiang, Hospedales & Lu 2018, "Deep Mutual Learning", CVPR (arXiv 1706.00384).

Response-based, online: a cohort of peers trained together from scratch, each also matching the others'
predictions; no peer is a pre-trained teacher.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import matplotlib.pyplot as plt
import pandas as pd
import torch

from kdrepro.arms import Arm, Net
from kdrepro.claims import Claim, Fits
from kdrepro.data import Data, load_data
from kdrepro.experiment import Experiment, Run
from kdrepro.measures import PARTS, Measure, PeerMean, TrainingError, WeightNoise
from kdrepro.objectives.response import MutualLearning
from kdrepro.objectives.task import CrossEntropy, LabelSmoothing
from kdrepro.paper import Comparison, Paper
from kdrepro.schemes import CohortNet
from kdrepro.tables import mean_std, runs_by_arm
from kdrepro.train import History, Recipe

PAPER = Paper("dml", "Zhang, Xiang, Hospedales & Lu 2018: Deep Mutual Learning",
              "06_dml.ipynb", transferred="response", scheme="online",
              comparison=Comparison("DML", "independent_a", ("dml_aa", "dml_ab_1", "dml_aaa"), "test_error"))


@dataclass(frozen=True)
class Protocol:
    dataset: str
    train_size: int | None            # images of the official training set used for training (None: all the rest)
    val_size: int                     # held out from it: measured (val_error), never used for a choice
    test_size: int | None             # official test images evaluated (None: all); smoke checks plumbing on fewer
    seeds: tuple[int, ...]
    network_a: str | dict             # a models.build architecture: a published name or a family spec
    network_b: str | dict             # the mixed cohort's second, larger architecture
    recipe: Recipe                    # the same for every network, alone or in a cohort
    smoothing: float                  # the label-smoothing control's share eps of the target moved off the label
    noise_sigmas: tuple[float, ...]   # std of the Gaussian noise added to every weight (the wide-minima probe)
    noise_sigma: float                # the one the claim reads
    noise_draws: int                  # noise samples averaged per sigma
    noise_images: int                 # training images the perturbed loss is measured on
    image_size: int | None = None   # resize the images (None: as published)
    download: bool = False


SMALL_RESNET = {"family": "resnet", "depth": 8, "channels": (8, 8, 16, 32)}     # 19,810 parameters
LARGE_RESNET = {"family": "resnet", "depth": 8, "channels": (16, 16, 32, 64)}   # 77,754: four times as many


# 30 epochs over 800 images: both networks fit their training set (the regime mutual learning regularises)
CPU_RECIPE = Recipe(epochs=30, batch_size=64, lr=0.05, weight_decay=5e-4)
# The paper (section 4.1): SGD with Nesterov momentum 0.9, lr 0.1 divided by 10 every 60 epochs, 200 epochs,
# batch 64; random crops and flips as usual for CIFAR. Weight decay 5e-4 is our assumption.
PAPER_RECIPE = Recipe(epochs=200, batch_size=64, lr=0.1, weight_decay=5e-4, schedule="step",
                      milestones=(60, 120, 180), crop_padding=4, flip=True)

PROFILES = {
    "smoke": Protocol("fashion_mnist", train_size=512, val_size=500, test_size=1000, seeds=(0,),
                      network_a=SMALL_RESNET, network_b=LARGE_RESNET, recipe=replace(CPU_RECIPE, epochs=1),
                      smoothing=0.1, noise_sigmas=(0.02,), noise_sigma=0.02, noise_draws=1, noise_images=256,
                      image_size=14),
    "cpu": Protocol("fashion_mnist", train_size=800, val_size=5000, test_size=None, seeds=(0, 1, 2, 3, 4),
                    network_a=SMALL_RESNET, network_b=LARGE_RESNET, recipe=CPU_RECIPE, smoothing=0.1,
                    noise_sigmas=(0.01, 0.02, 0.04), noise_sigma=0.02, noise_draws=3, noise_images=800,
                    image_size=14),
    "paper": Protocol("cifar100", train_size=None, val_size=0, test_size=None, seeds=(0, 1, 2), network_a="resnet32",
                      network_b={"family": "wide_resnet", "depth": 28, "widen": 10}, recipe=PAPER_RECIPE,
                      smoothing=0.1, noise_sigmas=(0.01, 0.02, 0.04), noise_sigma=0.02, noise_draws=3,
                      noise_images=5000, download=True),
}

# A cohort: its name and the network of each peer; arms "<cohort>_<peer>" are peers, "<cohort>" their mean.
COHORTS = {"dml_aa": ("a", "a"), "dml_ab": ("a", "b"), "dml_aaa": ("a", "a", "a")}

# online: no teacher, so no precondition on one; mutual learning is claimed to regularise, so the networks alone
# must overfit: fit their training set (the paper's CIFAR-100 networks reach ~100% training accuracy). The paper's
# numbers are CIFAR-100 ResNet-32 errors (100 - top-1).
CIFAR100 = "CIFAR-100 ResNet-32 error %, secondary source"
A_FITS, B_FITS = (Fits("independent_a"),), (Fits("independent_b"),)
CLAIMS = [
    Claim("Two peers of one architecture: peer 1 beats the same network trained alone", better="dml_aa_1",
          worse="independent_a", paper=(100 - 68.99, 100 - 71.10), source=CIFAR100, preconditions=A_FITS),
    Claim("Two peers of one architecture: peer 2 beats it too", better="dml_aa_2", worse="independent_a",
          paper=(100 - 68.99, 100 - 71.03), source=CIFAR100, preconditions=A_FITS),
    Claim("Mixed pair: the smaller network beats itself trained alone", better="dml_ab_1", worse="independent_a",
          preconditions=A_FITS),
    Claim("Mixed pair: the larger network beats itself trained alone", better="dml_ab_2", worse="independent_b",
          preconditions=B_FITS),
    Claim("More peers help further: three peers (mean) beat two (mean)", better="dml_aaa", worse="dml_aa",
          preconditions=A_FITS),
    Claim("Wider minima: weight noise raises a DML peer's training loss less than the independent network's",
          better="dml_aa", worse="independent_a", metric="noise_loss_rise", preconditions=A_FITS),
    # the control that separates knowledge from regularisation: label smoothing regularises with no peer at all
    Claim("Knowledge, not regularisation: the pair's peers (mean) beat network a trained alone with label smoothing",
          better="dml_aa", worse="label_smoothing_a", source="a control, not in the paper", preconditions=A_FITS),
]


def load(protocol: Protocol) -> Data:
    return load_data(protocol.dataset, train_size=protocol.train_size, val_size=protocol.val_size,
                     download=protocol.download, image_size=protocol.image_size).first_test(protocol.test_size)


def network(p: Protocol, role: str) -> str | dict:
    """The architecture of network `role`: "a" or "b"."""
    return {"a": p.network_a, "b": p.network_b}[role]


def peer_nets(p: Protocol, roles: tuple[str, ...]) -> tuple[Net, ...]:
    """A cohort's peers: the first of each architecture has the init name of that network trained alone ("a",
    "b"), so it starts from the same weights; the second and third have their own ("a#2", "a#3")."""
    return tuple(Net(network(p, role), role if not roles[:k].count(role) else f"{role}#{roles[:k].count(role) + 1}")
                 for k, role in enumerate(roles))


def arms(p: Protocol) -> dict[str, Arm]:
    """Every arm, at seed 0 (`Arm.at` moves one to another seed): each network alone on the labels, network a
    alone on smoothed labels (the control: a regulariser without peers), and each cohort of COHORTS trained by
    mutual learning, all on the same recipe and, at a seed, from the same initial weights and on the same batches.
    A cohort is one model, one arm and one run: its measure reads every peer (`PeerMean`), so its rows are
    "<cohort>" (the mean of its peers) and "<cohort>_<k>" (its k-th peer)."""
    alone = {f"independent_{role}": Arm(f"independent_{role}", Net(network(p, role), role), CrossEntropy(), p.recipe)
             for role in ("a", "b")}
    alone["label_smoothing_a"] = Arm("label_smoothing_a", Net(p.network_a, "a"), LabelSmoothing(p.smoothing), p.recipe)
    cohorts = {cohort: Arm(cohort, CohortNet(peer_nets(p, roles)), MutualLearning(), p.recipe)
               for cohort, roles in COHORTS.items()}
    return {**alone, **cohorts}


def measures(p: Protocol) -> dict[str, Measure]:
    """Each arm's reading: test error, and the training error (whether the network fits its training set); for
    network a alone and the peers of the a-a pair (the wide-minima claim compares them), the rise of the training
    loss under weight noise too. A cohort is read peer by peer and as the mean of its peers, with its ensemble's
    test error (`PeerMean`)."""
    probe = WeightNoise(p.noise_sigmas, p.noise_sigma, p.noise_draws, p.noise_images)
    readings: dict[str, Measure] = {"independent_a": probe, "independent_b": TrainingError(),
                                    "label_smoothing_a": TrainingError()}
    readings.update({cohort: PeerMean(probe if cohort == "dml_aa" else TrainingError()) for cohort in COHORTS})
    return readings


def run_arms(exp: Experiment, arms: dict[str, Arm], data: Data, measures: dict[str, Measure]) -> None:
    """Each arm at every seed of the profile, its wiring printed first: measured by its measure at that seed (the
    weight-noise probe draws from the seed's stream, so a network alone and its peers see the same noise), its rows
    completed from its training history (`history_columns`)."""
    for arm in arms.values():
        print(arm.describe())
    for seed in exp.protocol.seeds:
        for name, arm in arms.items():
            result = exp.run(arm.at(seed), data, measures[name].at(seed))
            history = exp.histories(arm.at(seed), data)[0]
            for row in [name] + [f"{name}_{k}" for k in result.get(PARTS, {})]:   # a cohort's peers: its parts
                exp.annotate(row, seed, history_columns(row, history))


def history_columns(arm: str, history: History) -> dict[str, object]:
    """The training seconds, and for a network alone on the labels or a peer its learning curve, "train_loss": its
    training cross-entropy in each epoch (a peer's own term "ce_k") and, for a peer, its network ("a" or "b")."""
    cohort, _, k = arm.rpartition("_")
    if cohort in COHORTS:   # a peer: its own term of the cohort's loss
        return {"train_loss": history.terms[f"ce_{k}"], "network": COHORTS[cohort][int(k) - 1],
                "seconds": history.seconds}
    if "ce" in history.terms:   # a network alone on the labels
        return {"train_loss": history.terms["ce"], "seconds": history.seconds}
    return {"seconds": history.seconds}   # a cohort read as a whole, or the label-smoothing control


def runs(p: Protocol) -> list[Run]:
    """Every run `run_arms` makes, each arm read by its measure at the seed: what `python -m kdrepro plan` lists and
    `work` trains."""
    readings = measures(p)
    return [Run(arm.at(seed), readings[name].at(seed)) for seed in p.seeds for name, arm in arms(p).items()]


# --- the notebook's tables and figures --------------------------------------------------------------------------

def describe(architecture: str | dict) -> str:
    if isinstance(architecture, str):
        return architecture
    return " ".join([architecture["family"]] + [f"{k}={v}" for k, v in architecture.items() if k != "family"])


def arm_descriptions(protocol: Protocol) -> dict[str, tuple[str, str]]:
    """arm -> (what it is, the paper's CIFAR-100 number for its ResNet-32 counterpart, top-1 %)."""
    a, b = describe(protocol.network_a), describe(protocol.network_b)
    return {
        "independent_a": (f"{a}, trained alone", "68.99 (ResNet-32, secondary source)"),
        "independent_b": (f"{b}, trained alone", "not found"),
        "label_smoothing_a": (f"{a}, trained alone on smoothed labels (eps {protocol.smoothing:g})",
                              "control, not in the paper"),
        "dml_aa_1": (f"{a}, peer 1 of a same-architecture pair", "71.10 (secondary source)"),
        "dml_aa_2": (f"{a}, peer 2 of a same-architecture pair", "71.03 (secondary source)"),
        "dml_aa": ("same-architecture pair, mean of peers", "not found"),
        "dml_ab_1": (f"{a}, paired with {b}", "not found"),
        "dml_ab_2": (f"{b}, paired with {a}", "not found"),
        "dml_aaa": (f"three {a} peers, mean of peers", "not found (paper: more peers help)"),
    }


def results_table(runs: pd.DataFrame, protocol: Protocol) -> list[dict[str, object]]:
    """One row per arm: test error, and the weight-noise probe, mean ± std over seeds, beside the paper."""
    described, table = arm_descriptions(protocol), []
    for arm, rows in runs_by_arm(runs, described):
        what, paper = described[arm]
        ensemble = rows["ensemble_test_error"] if "ensemble_test_error" in rows else pd.Series(dtype=float)
        table.append({"arm": arm, "what": what, "test error %": mean_std(rows["test_error"], 100),
                      "ensemble error %": mean_std(ensemble.dropna(), 100) if ensemble.notna().any() else "",
                      f"loss rise, sigma={protocol.noise_sigma:g}": mean_std(rows["noise_loss_rise"].dropna(), 1, 3)
                      if rows["noise_loss_rise"].notna().any() else "",
                      "seeds": len(rows), "paper: CIFAR-100 top-1 %": paper})
    return table


def plot_learning_curves(runs: pd.DataFrame) -> plt.Figure:
    """Training cross-entropy per epoch (mean over seeds): each network alone and as a peer."""
    groups = {"network a": ["independent_a", "dml_aa_1", "dml_aa_2", "dml_ab_1", "dml_aaa_1"],
              "network b": ["independent_b", "dml_ab_2"]}
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (title, arms) in zip(axes, groups.items()):
        for arm in arms:
            curves = runs[runs["arm"] == arm]["train_loss"].dropna().tolist()
            if not curves:
                continue
            mean = torch.tensor(curves).mean(dim=0)
            style = "--" if "independent" in arm else "-"
            ax.plot(range(1, len(mean) + 1), mean, marker="o", ms=3, label=arm, ls=style)
        ax.set(title=title, xlabel="epoch", ylabel="training cross-entropy", yscale="log")
        ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_weight_noise(runs: pd.DataFrame, protocol: Protocol) -> plt.Figure:
    """Training-loss rise against the weight noise's std: a flatter curve is a wider minimum."""
    figure, ax = plt.subplots(figsize=(5, 3.6))
    for arm in ("independent_a", "dml_aa_1", "dml_aa_2"):
        rises = runs[runs["arm"] == arm]["noise_loss_rises"].dropna().tolist()
        if rises:
            values = torch.tensor(rises)
            ax.errorbar(protocol.noise_sigmas, values.mean(dim=0), yerr=values.std(dim=0) if len(values) > 1 else 0,
                        marker="o", capsize=3, label=arm)
    ax.set(xlabel="sigma of the weight noise", ylabel="rise of the training loss", title="Width of the minimum")
    ax.legend(fontsize=8)
    return figure


def plot_arms(runs: pd.DataFrame, protocol: Protocol) -> plt.Figure:
    """Test error of every arm, mean ± std over seeds, each seed a dot."""
    arms = [a for a in arm_descriptions(protocol) if a in set(runs["arm"])]
    figure, ax = plt.subplots(figsize=(8, 3.6))
    for i, arm in enumerate(arms):
        values = runs[runs["arm"] == arm]["test_error"] * 100
        colour = "C0" if "independent" in arm else "C2" if "smoothing" in arm else "C1"
        ax.errorbar(i, values.mean(), yerr=values.std() if len(values) > 1 else 0, fmt="o", ms=8, capsize=4,
                    color=colour)
        ax.plot([i + 0.15] * len(values), values, "k.", ms=4)
    ax.set_xticks(range(len(arms)), arms, rotation=25)
    ax.set(ylabel="test error %", title="Alone (blue), on smoothed labels (green) and in a cohort (orange)")
    figure.tight_layout()
    return figure


DEPARTURES = """
- Data and scale (profile `cpu`): Fashion-MNIST at 14x14 (area-averaged, a quarter of the convolutions' cost),
  800 training images (each seed draws its own), 30 epochs, and two CIFAR-style ResNet-8s, the smaller with
  widths 8-8-16-32 (19,810 parameters) and the larger with 16-16-32-64 (77,754), instead of CIFAR-100 with
  ResNet-32, MobileNet, InceptionV1 and WRN-28-10. Profile `paper` runs CIFAR-100 with ResNet-32 and WRN-28-10
  (MobileNet and InceptionV1 are not in `kdrepro.models`).
- The regime: the paper's networks fit CIFAR-100's training set and overfit, and mutual learning is claimed to
  regularise them. An earlier protocol (5,000 images, 12 epochs) left the networks alone underfitting (training
  cross-entropy about 0.25), with little to regularise, and its "smaller and larger" networks had 19,810 and
  19,714 parameters. Here, on 800 images for 30 epochs, both networks alone fit their training set: every claim
  checks it (`Fits`: training error at most 1%, on the training split), and "the larger" has four times the
  parameters of "the smaller". 800 images rather than the 1,000 of the protocol before: this notebook's
  seven-minute budget (at 1,000 its runs took 938 worker-seconds, 478 s cold on two cores); at 800 the pilot
  below still finds every network alone at 0-0.9% training error. Fewer epochs were no option: at 20 epochs the
  networks kept 3-4% training error.
- Control (not in the paper): `label_smoothing_a`, network a alone on smoothed labels (eps 0.1, the usual value,
  not tuned), from the same initial weights and on the same batches. Label smoothing regularises without any
  peer; "the pair's peers beat it" separates what the peers teach from regularisation.
- Recipe (profile `cpu`, chosen by us, the same for every network alone or in a cohort): SGD with momentum 0.9,
  lr 0.05 on a cosine schedule, weight decay 5e-4, batch 64, no augmentation. Profile `paper` follows the
  paper's schedule (lr 0.1 divided by 10 every 60 epochs, 200 epochs, batch 64) with plain momentum instead of
  Nesterov momentum (not in `Recipe`); its weight decay 5e-4 is our assumption.
- Update order: all peers step at once on the sum of their losses, each peer's targets taken from the others'
  predictions before the step; the paper's Algorithm 1 updates the peers one after the other, recomputing the
  predictions in between.
- A peer and the same network trained alone start from the same initial weights and see the same batches; the
  paper does not say how its independent baselines were seeded.
- Wide minima: the paper perturbs the weights with Gaussian noise and reports the rise of the training loss; our
  probe does the same on the 800 training images in evaluation mode (batch-norm statistics not recomputed), three
  noise draws per sigma, drawn from the seed's stream: at a seed, the network alone and its peers get the same
  noise (the comparison is paired), and each sigma scales the same draws. The sigma the claim reads (0.02) was
  fixed before running.
- Seeds (profile `cpu`): five, the most the time budget allows for this regime (the larger network and the
  longer schedule cost more per seed than the earlier protocol's). The pilot (seeds 100-102, validation only,
  `results/cpu/pilots/dml.csv`, at 800 images) puts the MDE within the SESOI at five seeds for peer 1 of the a-a
  pair, both networks of the mixed pair, three peers against two and the label-smoothing control (paired SDs
  0.04-0.32 points); peer 2 (SD 0.78 points, 9 seeds needed) and the wide-minima probe (46 seeds) need more than
  the budget allows: where such a claim's MDE stays above its SESOI, its row says so (inconclusive, with the
  seeds it would need).
- Every number is the last epoch's, never the best epoch's.
"""
