"""Zhang, Xiang, Hospedales & Lu 2018, "Deep Mutual Learning", CVPR (arXiv 1706.00384).

Response-based, online: a cohort of peers trained together from scratch, each also matching the others'
predictions; no peer is a pre-trained teacher.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state

from kdrepro.paper import Paper
from kdrepro.claims import Claim
from kdrepro.data import Data, Split, load_data
from kdrepro.experiment import Experiment, mean_std, runs_by_arm
from kdrepro.models import build, count_parameters
from kdrepro.schemes import Cohort, MutualLearning, mutual_learning_losses
from kdrepro.train import CrossEntropy, Recipe, evaluate, fit, predict_logits

PAPER = Paper("dml", "Zhang, Xiang, Hospedales & Lu 2018: Deep Mutual Learning",
              "06_dml.ipynb", transferred="response", scheme="online")


@dataclass(frozen=True)
class Protocol:
    dataset: str
    train_size: int | None            # images of the official training set used for training (None: all the rest)
    val_size: int                     # held out from it, unused by any arm (kept for symmetry with other papers)
    test_size: int | None             # official test images evaluated (None: all); smoke checks plumbing on fewer
    seeds: tuple[int, ...]
    network_a: str | dict             # a models.build architecture: a published name or a family spec
    network_b: str | dict             # the mixed cohort's second architecture
    recipe: Recipe                    # the same for every network, alone or in a cohort
    noise_sigmas: tuple[float, ...]   # std of the Gaussian noise added to every weight (the wide-minima probe)
    noise_sigma: float                # the one the claim reads
    noise_draws: int                  # noise samples averaged per sigma
    noise_images: int                 # training images the perturbed loss is measured on
    image_size: int | None = None   # resize the images (None: as published)
    download: bool = False


SMALL_RESNET = {"family": "resnet", "depth": 8, "channels": (8, 8, 16, 32)}
SMALL_WRN = {"family": "wide_resnet", "depth": 10, "widen": 1, "base": 8}


CPU_RECIPE = Recipe(epochs=12, batch_size=64, lr=0.05, weight_decay=5e-4)
# The paper (section 4.1): SGD with Nesterov momentum 0.9, lr 0.1 divided by 10 every 60 epochs, 200 epochs,
# batch 64; random crops and flips as usual for CIFAR. Weight decay 5e-4 is our assumption.
PAPER_RECIPE = Recipe(epochs=200, batch_size=64, lr=0.1, weight_decay=5e-4, schedule="step",
                      milestones=(60, 120, 180), crop_padding=4, flip=True)

PROFILES = {
    "smoke": Protocol("fashion_mnist", train_size=512, val_size=500, test_size=1000, seeds=(0,),
                      network_a=SMALL_RESNET, network_b=SMALL_WRN, recipe=replace(CPU_RECIPE, epochs=1),
                      noise_sigmas=(0.02,), noise_sigma=0.02, noise_draws=1, noise_images=256, image_size=14),
    "cpu": Protocol("fashion_mnist", train_size=5000, val_size=5000, test_size=None, seeds=(0, 1, 2),
                    network_a=SMALL_RESNET, network_b=SMALL_WRN, recipe=CPU_RECIPE, noise_sigmas=(0.01, 0.02, 0.04),
                    noise_sigma=0.02, noise_draws=3, noise_images=2000, image_size=14),
    "paper": Protocol("cifar100", train_size=None, val_size=0, test_size=None, seeds=(0, 1, 2), network_a="resnet32",
                      network_b={"family": "wide_resnet", "depth": 28, "widen": 10}, recipe=PAPER_RECIPE,
                      noise_sigmas=(0.01, 0.02, 0.04), noise_sigma=0.02, noise_draws=3, noise_images=5000,
                      download=True),
}

# A cohort: its name and the network of each peer; arms "<cohort>_<peer>" are peers, "<cohort>" their mean.
COHORTS = {"dml_aa": ("a", "a"), "dml_ab": ("a", "b"), "dml_aaa": ("a", "a", "a")}

# online: no teacher, so no precondition on one; the paper's numbers are CIFAR-100 ResNet-32 errors (100 - top-1)
CIFAR100 = "CIFAR-100 ResNet-32 error %, secondary source"
CLAIMS = [
    Claim("Two peers of one architecture: peer 1 beats the same network trained alone", better="dml_aa_1",
          worse="independent_a", paper=(100 - 68.99, 100 - 71.10), source=CIFAR100),
    Claim("Two peers of one architecture: peer 2 beats it too", better="dml_aa_2", worse="independent_a",
          paper=(100 - 68.99, 100 - 71.03), source=CIFAR100),
    Claim("Mixed pair: the smaller network beats itself trained alone", better="dml_ab_1", worse="independent_a"),
    Claim("Mixed pair: the larger network beats itself trained alone", better="dml_ab_2", worse="independent_b"),
    Claim("More peers help further: three peers (mean) beat two (mean)", better="dml_aaa", worse="dml_aa"),
    Claim("Wider minima: weight noise raises a DML peer's training loss less than the independent network's",
          better="dml_aa", worse="independent_a", metric="noise_loss_rise"),
]


def load(protocol: Protocol) -> Data:
    return load_data(protocol.dataset, train_size=protocol.train_size, val_size=protocol.val_size,
                     download=protocol.download, image_size=protocol.image_size).first_test(protocol.test_size)


class DeepMutualLearning:
    """Networks trained alone and the same networks (same initial weights, same batches) trained as cohorts."""

    def __init__(self, experiment: Experiment, data: Data):
        self.exp, self.protocol = experiment, experiment.protocol
        self.data = data.to(experiment.device)
        self.data_key = data.key()
        self.steps_per_epoch = -(-len(self.data.train) // self.protocol.recipe.batch_size)

    def network(self, role: str, seed: int, occurrence: int = 0) -> nn.Module:
        """Network `role` ("a" or "b") initialised from (seed, role, occurrence): the first "a" of every cohort
        starts from the weights the independent "a" starts from, so a peer and its lone self are seed-paired."""
        torch.manual_seed(seed * 1000 + occurrence * 10 + "ab".index(role))
        architecture = self.protocol.network_a if role == "a" else self.protocol.network_b
        return build(architecture, self.data.num_classes, self.data.input_shape[0]).to(self.exp.device)

    def independent_arm(self, role: str, seed: int) -> dict:
        def compute():
            model = self.network(role, seed)
            history = fit(model, CrossEntropy(), self.data.train, self.protocol.recipe, seed=seed,
                          name=f"{role} alone seed {seed}")
            return {**self._measure(model, probe=role == "a"), "train_loss": history.loss, "seconds": history.seconds}

        return self.exp.run_config(f"independent_{role}", seed, self._config(("independent", role)), compute)

    def cohort_arm(self, cohort: str, seed: int) -> dict:
        """Train the cohort; record each peer as an arm "<cohort>_<k>" and their mean as "<cohort>"."""
        roles = COHORTS[cohort]

        def compute():
            peers = [self.network(role, seed, roles[:k].count(role)) for k, role in enumerate(roles)]
            objective = MutualLearning()
            history = fit(Cohort(peers), objective, self.data.train, self.protocol.recipe, seed=seed,
                          name=f"{cohort} seed {seed}")
            curves = objective.curves(self.steps_per_epoch)
            ensemble = evaluate(Cohort(peers), self.data.test)["error"]
            probe = cohort == "dml_aa"  # the pair the wide-minima claim compares with network a alone
            measured = [{**self._measure(peer, probe), "train_loss": curve} for peer, curve in zip(peers, curves)]
            return {"peers": measured, "ensemble_test_error": ensemble, "seconds": history.seconds}

        result = self.exp.run_config(cohort, seed, self._config(roles), compute)
        peers = result["peers"]
        for k, (role, peer) in enumerate(zip(roles, peers), start=1):
            self.exp.record(f"{cohort}_{k}", seed, {**peer, "network": role})
        mean = {metric: sum(p[metric] for p in peers) / len(peers) for metric in ("test_error", "noise_loss_rise")
                if metric in peers[0]}
        self.exp.record(cohort, seed, {**mean, "ensemble_test_error": result["ensemble_test_error"],
                                       "seconds": result["seconds"]})
        return result

    def _config(self, kind: tuple[str, ...]) -> dict:
        p = self.protocol
        return {"data": self.data_key, "kind": kind, "network_a": p.network_a, "network_b": p.network_b,
                "recipe": asdict(p.recipe), "noise": (p.noise_sigmas, p.noise_draws, p.noise_images)}

    def _measure(self, model: nn.Module, probe: bool) -> dict:
        """Test error; with `probe`, the rise of the training loss under weight noise too."""
        p = self.protocol
        metrics = {"test_error": evaluate(model, self.data.test)["error"], "parameters": count_parameters(model)}
        if probe:
            images = self.data.train.subset(torch.arange(min(p.noise_images, len(self.data.train))))
            rises = [loss_under_weight_noise(model, images, sigma, p.noise_draws) for sigma in p.noise_sigmas]
            metrics.update(noise_loss_rise=rises[p.noise_sigmas.index(p.noise_sigma)], noise_loss_rises=rises)
        return metrics


@torch.no_grad()
def loss_under_weight_noise(model: nn.Module, split: Split, sigma: float, draws: int, seed: int = 0) -> float:
    """Mean rise of the training cross-entropy when every weight gets independent N(0, sigma^2) noise (the
    paper's section 4.4 probe of a minimum's width), over `draws` noise samples; the model is left unchanged."""
    clean = F.cross_entropy(predict_logits(model, split.x), split.y).item()
    noise = torch.Generator(device=split.x.device).manual_seed(seed)
    saved = [p.detach().clone() for p in model.parameters()]
    rises = []
    for _ in range(draws):
        for p in model.parameters():
            p.add_(sigma * torch.randn(p.shape, generator=noise, device=p.device))
        rises.append(F.cross_entropy(predict_logits(model, split.x), split.y).item() - clean)
        for p, original in zip(model.parameters(), saved):
            p.copy_(original)
    return sum(rises) / draws


# --- cost of a cohort: K peers against K separate models, and peers batched with torch.func ----------------------

def batched_peers(peers: list[nn.Module]):
    """One forward for K peers of one architecture: their weights stacked, the network vectorised over them
    with torch.func.vmap. Returns (stacked parameters to optimise, a function x -> (K, N, C) logits)."""
    parameters, buffers = stack_module_state(peers)
    skeleton = peers[0]

    def one(weights, state, x):
        return functional_call(skeleton, (weights, state), (x,))

    return parameters, lambda x: torch.vmap(one, in_dims=(0, 0, None))(parameters, buffers, x)


def step_costs(build_peer, ks: tuple[int, ...], x, y, repeats: int = 5) -> list[dict]:
    """Seconds for one training step (forward, loss, backward) of K peers, three ways."""
    rows = []
    for k in ks:
        peers = [build_peer() for _ in range(k)]
        parameters, batched = batched_peers([build_peer() for _ in range(k)])

        def separate():
            for peer in peers:
                F.cross_entropy(peer(x), y).backward()

        def cohort():
            mutual_learning_losses([peer(x) for peer in peers], y).sum().backward()

        def vectorised():
            mutual_learning_losses(list(batched(x)), y).sum().backward()

        rows.append({"peers K": k, **{name: f"{_seconds(step, repeats) * 1000:.0f} ms" for name, step in (
            ("K separate models", separate), ("cohort, K forwards", cohort), ("cohort, torch.func vmap", vectorised))}})
    return rows


def _seconds(step, repeats: int) -> float:
    step()  # warm-up: first-call allocations
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats


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
        ax.errorbar(i, values.mean(), yerr=values.std() if len(values) > 1 else 0, fmt="o", ms=8, capsize=4,
                    color="C0" if "independent" in arm else "C1")
        ax.plot([i + 0.15] * len(values), values, "k.", ms=4)
    ax.set_xticks(range(len(arms)), arms, rotation=25)
    ax.set(ylabel="test error %", title="Alone (blue) and in a cohort (orange)")
    figure.tight_layout()
    return figure


DEPARTURES = """
- Data and scale (profile `cpu`): Fashion-MNIST at 14x14 (area-averaged, a quarter of the convolutions' cost),
  5,000 training images, 12 epochs, and two small networks of about the same cost, a CIFAR-style ResNet-8
  (widths 8-8-16-32) and a WRN-10-1 (base width 8), instead of CIFAR-100 with ResNet-32, MobileNet, InceptionV1
  and WRN-28-10. Profile `paper` runs CIFAR-100 with ResNet-32 and WRN-28-10 (MobileNet and InceptionV1 are not
  in `kdrepro.models`).
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
  probe does the same on 2,000 training images in evaluation mode (batch-norm statistics not recomputed), three
  noise draws per sigma. The sigma the claim reads (0.02) was fixed before running.
- Every number is the last epoch's, never the best epoch's.
"""
