"""Park, Kim, Lu & Cho 2019, "Relational Knowledge Distillation" (arXiv 1904.05068), CVPR.

Relation-based (between examples), offline: the student learns the distances and angles that the teacher's
embeddings of a batch form, not the embeddings themselves; so its embedding may be smaller than the teacher's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import cached_property, partial

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import Tensor, nn

from kdrepro import cub
from kdrepro.paper import Comparison, Paper
from kdrepro.claims import Claim, Precondition
from kdrepro.data import Data, Split, load_data
from kdrepro.experiment import Experiment, mean_std, runs_by_arm
from kdrepro.losses.relation import rkd_loss
from kdrepro.metric_learning import Embedder, class_balanced_batches, embed, recall_at_k
from kdrepro.models import build
from kdrepro.relation_distillation import RelationalDistillation, TripletObjective
from kdrepro.schemes import FeatureDistillation, ResponseDistillation
from kdrepro.train import CrossEntropy, Recipe, evaluate, fit

PAPER = Paper("rkd", "Park, Kim, Lu & Cho 2019: Relational Knowledge Distillation",
              "05_rkd.ipynb", transferred="relation", scheme="offline",
              comparison=Comparison("RKD", "triplet", ("rkd_d", "rkd_a", "rkd_da"), "recall_at_1"))

KS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Protocol:
    dataset: str                    # classification, and metric learning too unless metric_dataset names another
    train_size: int | None          # images of the official training set used for training (None: all the rest)
    val_size: int
    seeds: tuple[int, ...]
    train_classes: tuple[int, ...]  # metric learning trains on these; Recall@K is measured on the other classes
    teacher: str | dict             # architectures for `kdrepro.models.build`; for metric learning the last
    student: str | dict             # layer outputs the embedding
    teacher_dim: int                # embedding sizes (the paper: 512 teacher, 128/64/32/16 students)
    student_dim: int
    margin: float                   # of the triplet loss, on L2-normalised embeddings
    per_class: int                  # the sampler's least number of examples of each class in a batch
    metric_recipe: Recipe           # every metric-learning arm, teacher included
    metric_weights: tuple[float, float]   # (lambda_D, lambda_A) for metric learning: 1 and 2
    classifier_recipe: Recipe       # the classification teacher and both students
    temperature: float              # Hinton KD in the classification arms
    hard_weight: float
    classifier_weights: tuple[float, float]  # (lambda_D, lambda_A) for classification: 25 and 50
    test_size: int | None = None    # evaluate on the first test_size test images (None: all of them)
    download: bool = False
    metric_dataset: str | None = None   # "cub200": metric learning on all of CUB-200-2011, species 1-100 train
    image_size: int | None = None       # (labels 0-99), 101-200 held out, images resized to image_size pixels
    classifier_teacher: str | dict | None = None  # the classification arms' networks (None: teacher, student)
    classifier_student: str | dict | None = None

    @property
    def classifiers(self) -> tuple[str | dict, str | dict]:
        """(teacher, student) of the classification arms."""
        return (self.teacher if self.classifier_teacher is None else self.classifier_teacher,
                self.student if self.classifier_student is None else self.classifier_student)


SMALL_TEACHER = {"family": "resnet", "depth": 14, "channels": (8, 8, 16, 32)}
SMALL_STUDENT = {"family": "resnet", "depth": 8, "channels": (8, 8, 16, 32)}
METRIC_RECIPE = Recipe(epochs=8, lr=1e-3, optimizer="adam")
CLASSIFIER_RECIPE = Recipe(epochs=8, lr=0.05, weight_decay=5e-4)
# the CIFAR-100 benchmark's recipe (RepDistiller): 240 epochs, lr 0.05 x0.1 at 150/180/210, wd 5e-4, batch 64
BENCHMARK_RECIPE = Recipe(epochs=240, batch_size=64, lr=0.05, schedule="step", milestones=(150, 180, 210),
                          weight_decay=5e-4, crop_padding=4, flip=True)
# the authors' metric-learning students (lenscloth/RKD, examples/cub200.sh and run_distill.py): Adam 1e-4, weight
# decay 1e-5, 80 epochs, x0.1 at 40 and 60, batch 128; their 256 -> 224 random crop is a translation of up to 16
# pixels each way, and they flip
CUB_RECIPE = Recipe(epochs=80, batch_size=128, lr=1e-4, optimizer="adam", weight_decay=1e-5, schedule="step",
                    milestones=(40, 60), gamma=0.1, crop_padding=16, flip=True)

PROFILES = {
    "smoke": Protocol("fashion_mnist", train_size=600, val_size=200, test_size=1000, seeds=(0,),
                      train_classes=(0, 1, 2, 3, 4),
                      teacher=SMALL_TEACHER, student=SMALL_STUDENT, teacher_dim=32, student_dim=8, margin=0.2,
                      per_class=4, metric_recipe=replace(METRIC_RECIPE, epochs=2), metric_weights=(1.0, 2.0),
                      classifier_recipe=replace(CLASSIFIER_RECIPE, epochs=2), temperature=4.0, hard_weight=0.1,
                      classifier_weights=(25.0, 50.0)),
    "cpu": Protocol("fashion_mnist", train_size=2500, val_size=500, seeds=(0, 1, 2), train_classes=(0, 1, 2, 3, 4),
                    teacher=SMALL_TEACHER, student=SMALL_STUDENT, teacher_dim=64, student_dim=16, margin=0.2,
                    per_class=4, metric_recipe=METRIC_RECIPE, metric_weights=(1.0, 2.0),
                    classifier_recipe=CLASSIFIER_RECIPE, temperature=4.0, hard_weight=0.1,
                    classifier_weights=(25.0, 50.0)),
    # metric learning as the paper's Table 1 setting: CUB-200-2011 (provided by the user, see `kdrepro.cub`) at
    # 224 x 224, torchvision's ResNet-50 teacher (512-d, triplet, L2-normalised) and ResNet-18 students (128-d),
    # all from scratch, batches of 25 species x 5 images as the authors' sampler; classification is the CIFAR-100
    # benchmark's resnet56 -> resnet20 pair (downloaded when missing)
    "paper": Protocol("cifar100", train_size=None, val_size=5000, seeds=(0, 1, 2), train_classes=tuple(range(100)),
                      teacher="tv_resnet50", student="tv_resnet18", teacher_dim=512, student_dim=128, margin=0.2,
                      per_class=5, metric_recipe=CUB_RECIPE, metric_weights=(1.0, 2.0),
                      classifier_recipe=BENCHMARK_RECIPE, temperature=4.0, hard_weight=0.1,
                      classifier_weights=(25.0, 50.0), download=True, metric_dataset="cub200", image_size=224,
                      classifier_teacher="resnet56", classifier_student="resnet20"),
}

METRIC_ARMS = {"triplet": None, "rkd_d": "d", "rkd_a": "a", "rkd_da": "da"}

# the relations a student copies are worth copying only from a teacher that ranks better (see kdrepro.claims)
TEACHER_LEADS = (Precondition("teacher", "triplet"),)
CLAIMS = [
    Claim("The RKD-DA student (smaller embedding) beats the triplet-trained student on Recall@1", better="rkd_da",
          worse="triplet", metric="recall_at_1", lower_is_better=False, preconditions=TEACHER_LEADS),
    Claim("The RKD-DA student matches (within 1 point) or beats its teacher on Recall@1", better="rkd_da",
          worse="teacher", metric="recall_at_1", lower_is_better=False, margin=0.01, preconditions=TEACHER_LEADS),
    Claim("RKD-D alone beats the triplet-trained student on Recall@1", better="rkd_d", worse="triplet",
          metric="recall_at_1", lower_is_better=False, preconditions=TEACHER_LEADS),
    Claim("RKD-A alone beats the triplet-trained student on Recall@1", better="rkd_a", worse="triplet",
          metric="recall_at_1", lower_is_better=False, preconditions=TEACHER_LEADS),
    Claim("Classification: RKD-DA on the penultimate layer adds to KD", better="kd_rkd", worse="kd",
          paper=(100 - 74.26, 100 - 74.66), source="CIFAR-100 error %, low-trust summary",
          preconditions=(Precondition("classifier_teacher", "kd"),)),
]


def load(protocol: Protocol) -> Data:
    """The metric-learning data: CUB-200-2011 when the profile names it (it is never downloaded), else `dataset`,
    which the classification arms share."""
    if protocol.metric_dataset is None:
        return load_classifier_data(protocol)
    if protocol.metric_dataset != "cub200":
        raise ValueError(f"metric_dataset={protocol.metric_dataset!r}: only 'cub200' (or None) is read")
    return cub.load_cub(protocol.image_size or cub.DEFAULT_SIZE)


def load_classifier_data(protocol: Protocol) -> Data:
    return load_data(protocol.dataset, train_size=protocol.train_size, val_size=protocol.val_size,
                     download=protocol.download)


def metric_splits(data: Data, train_classes: tuple[int, ...]) -> tuple[Split, Split]:
    """Training images of `train_classes`, and test images of every other class: Recall@K is measured on classes
    the embedding never saw."""
    seen = torch.tensor(train_classes, device=data.train.y.device)
    train = data.train.subset(torch.isin(data.train.y, seen).nonzero(as_tuple=True)[0])
    held_out = data.test.subset((~torch.isin(data.test.y, seen)).nonzero(as_tuple=True)[0])
    return train, held_out


class RKD:
    """Metric learning (teacher by triplet loss; students by triplet loss or RKD alone) and classification (KD
    against KD + RKD-DA). One teacher of each kind per seed; its seed's students learn from it.

    `data` is `load(protocol)`'s, the metric-learning data; the classification arms train on it too, unless the
    profile learns metrics on CUB-200-2011, when they read `dataset` at their first use."""

    def __init__(self, experiment: Experiment, data: Data):
        self.exp, self.protocol = experiment, experiment.protocol
        self.data = data.first_test(self.protocol.test_size).to(experiment.device)
        self.metric_train, self.held_out = metric_splits(self.data, self.protocol.train_classes)
        self.data_key = data.key()
        self.sampler = partial(class_balanced_batches, per_class=self.protocol.per_class)

    @cached_property
    def classifier_data(self) -> Data:
        if self.protocol.metric_dataset is None:
            return self.data
        return load_classifier_data(self.protocol).first_test(self.protocol.test_size).to(self.exp.device)

    @cached_property
    def classifier_data_key(self) -> dict:
        return self.data_key if self.protocol.metric_dataset is None else self.classifier_data.key()

    # --- metric learning ---

    def _embedder(self, architecture: str | dict, dim: int, normalize: bool, seed: int) -> Embedder:
        torch.manual_seed(seed)
        backbone = build(architecture, dim, self.data.input_shape[0])
        return Embedder(backbone, normalize).to(self.exp.device)

    def metric_teacher(self, seed: int) -> Embedder:
        p = self.protocol

        def train(model):
            fit(model, TripletObjective(p.margin), self.metric_train, p.metric_recipe, seed=seed,
                name=f"metric teacher seed {seed}", sampler=self.sampler)

        return self.exp.model("rkd-metric-teacher", self._metric_teacher_config(seed),
                              lambda: self._embedder(p.teacher, p.teacher_dim, True, seed), train)

    def metric_teacher_arm(self, seed: int) -> dict:
        return self.exp.run_config("teacher", seed, self._metric_teacher_config(seed),
                            lambda: self._recalls(self.metric_teacher(seed)))

    def metric_student(self, arm: str, seed: int) -> Embedder:
        """The student of `arm`: "triplet" (labels, L2-normalised like the teacher) or "rkd_d" / "rkd_a" /
        "rkd_da" (the teacher's relations alone, no normalisation, as the paper's best students)."""
        p = self.protocol
        terms = METRIC_ARMS[arm]

        def train(model):
            if terms is None:
                objective = TripletObjective(p.margin)
            else:
                weight_d, weight_a = p.metric_weights
                objective = RelationalDistillation(self.metric_teacher(seed), weight_d if "d" in terms else 0.0,
                                                   weight_a if "a" in terms else 0.0)
            fit(model, objective, self.metric_train, p.metric_recipe, seed=seed, name=f"{arm} seed {seed}",
                sampler=self.sampler)

        return self.exp.model(f"rkd-{arm}", self._metric_student_config(arm, seed),
                              lambda: self._embedder(p.student, p.student_dim, terms is None, seed), train)

    def metric_student_arm(self, arm: str, seed: int) -> dict:
        return self.exp.run_config(arm, seed, self._metric_student_config(arm, seed),
                            lambda: self._recalls(self.metric_student(arm, seed)))

    def _recalls(self, model: nn.Module) -> dict:
        recalls = recall_at_k(embed(model, self.held_out.x), self.held_out.y, KS)
        return {f"recall_at_{k}": r for k, r in recalls.items()}

    def _metric_teacher_config(self, seed: int) -> dict:
        p = self.protocol
        return {"data": self.data_key, "classes": p.train_classes, "architecture": p.teacher, "dim": p.teacher_dim,
                "margin": p.margin, "per_class": p.per_class, "recipe": asdict(p.metric_recipe), "seed": seed}

    def _metric_student_config(self, arm: str, seed: int) -> dict:
        p = self.protocol
        config = {**self._metric_teacher_config(seed), "architecture": p.student, "dim": p.student_dim, "arm": arm}
        if METRIC_ARMS[arm] is not None:
            config.update(teacher=self._metric_teacher_config(seed), weights=p.metric_weights)
        return config

    # --- classification ---

    def classifier_teacher(self, seed: int) -> nn.Module:
        p, data = self.protocol, self.classifier_data

        def build_teacher():
            torch.manual_seed(seed)
            return build(p.classifiers[0], data.num_classes, data.input_shape[0]).to(self.exp.device)

        def train(model):
            fit(model, CrossEntropy(), data.train, p.classifier_recipe, seed=seed, name=f"teacher seed {seed}")

        return self.exp.model("rkd-classifier-teacher", self._classifier_config("teacher", seed), build_teacher,
                              train)

    def classifier_arm(self, arm: str, seed: int) -> dict:
        """"classifier_teacher", "kd" (Hinton KD) or "kd_rkd" (Hinton KD + RKD-DA on the pooled features)."""
        p, data = self.protocol, self.classifier_data

        def compute():
            teacher = self.classifier_teacher(seed)
            if arm == "classifier_teacher":
                return self._test(teacher)
            torch.manual_seed(seed)
            student = build(p.classifiers[1], data.num_classes, data.input_shape[0]).to(self.exp.device)
            if arm == "kd":
                objective = ResponseDistillation(teacher, p.temperature, p.hard_weight)
            else:
                relation = partial(rkd_loss, distance_weight=p.classifier_weights[0],
                                   angle_weight=p.classifier_weights[1])
                objective = FeatureDistillation(teacher, [("embedding", "embedding")], relation, weight=1.0,
                                                temperature=p.temperature, hard_weight=p.hard_weight)
            fit(student, objective, data.train, p.classifier_recipe, seed=seed, name=f"{arm} seed {seed}")
            return self._test(student)

        return self.exp.run_config(arm, seed, self._classifier_config(arm, seed), compute)

    def _classifier_config(self, arm: str, seed: int) -> dict:
        p = self.protocol
        teacher, student = p.classifiers
        config = {"data": self.classifier_data_key, "architecture": teacher, "recipe": asdict(p.classifier_recipe),
                  "seed": seed}
        if arm == "teacher":
            return config
        if arm == "classifier_teacher":
            return {**config, "arm": arm}
        return {"teacher": config, "architecture": student, "recipe": asdict(p.classifier_recipe), "arm": arm,
                "temperature": p.temperature, "hard_weight": p.hard_weight,
                "weights": p.classifier_weights if arm == "kd_rkd" else None}

    def _test(self, model: nn.Module) -> dict:
        test = evaluate(model, self.classifier_data.test)
        return {"test_accuracy": test["accuracy"], "test_error": test["error"]}


# --- the notebook's tables and figures --------------------------------------------------------------------------

def arm_descriptions(protocol: Protocol) -> dict[str, tuple[str, str]]:
    """arm -> (what it is, the paper's number beside it)."""
    t, s = f"{protocol.teacher_dim}-d", f"{protocol.student_dim}-d"
    return {
        "teacher": (f"teacher, triplet loss, {t}, L2-normalised",
                    "R@1 CUB 61.24, Cars 77.17 (ResNet-50, 512-d; secondary note)"),
        "triplet": (f"student, triplet loss, {s}, L2-normalised", "not found"),
        "rkd_d": (f"student, RKD-D alone, {s}", "not found"),
        "rkd_a": (f"student, RKD-A alone, {s}", "not found"),
        "rkd_da": (f"student, RKD-DA, {s}", "R@1 Cars 82.50 (ResNet-18-128, no L2; secondary note)"),
        "classifier_teacher": ("classification teacher", "CIFAR-100 bench. resnet56: 72.34"),
        "kd": ("student, Hinton KD", "CIFAR-100 74.26 (low-trust summary); bench. resnet20 KD: 70.66"),
        "kd_rkd": ("student, Hinton KD + RKD-DA (25/50)",
                   "CIFAR-100 74.66 (low-trust summary); bench. resnet20 RKD alone: 69.61"),
    }


def metric_table(runs: pd.DataFrame, protocol: Protocol) -> list[dict[str, object]]:
    described, table = arm_descriptions(protocol), []
    for arm, rows in runs_by_arm(runs, described):
        if "recall_at_1" not in rows or rows["recall_at_1"].isna().all():
            continue  # a classification arm
        what, paper = described[arm]
        table.append({"arm": arm, "what": what, **{f"R@{k} %": mean_std(rows[f"recall_at_{k}"], 100) for k in KS},
                      "seeds": len(rows), "paper": paper})
    return table


def classification_table(runs: pd.DataFrame, protocol: Protocol) -> list[dict[str, object]]:
    table = []
    for arm, rows in runs_by_arm(runs, ("classifier_teacher", "kd", "kd_rkd")):
        what, paper = arm_descriptions(protocol)[arm]
        table.append({"arm": arm, "what": what, "test accuracy %": mean_std(rows["test_accuracy"], 100),
                      "seeds": len(rows), "paper": paper})
    return table


def results_table(runs: pd.DataFrame, protocol: Protocol) -> list[dict[str, object]]:
    """Both tables in one, for the published results: a blank where a metric does not apply to an arm."""
    rows = metric_table(runs, protocol) + classification_table(runs, protocol)
    columns = ["arm", "what", *(f"R@{k} %" for k in KS), "test accuracy %", "seeds", "paper"]
    return [{column: row.get(column, "") for column in columns} for row in rows]


@torch.no_grad()
def plot_embeddings(models: dict[str, nn.Module], held_out: Split, classes: tuple[str, ...],
                    count: int = 1000) -> plt.Figure:
    """Each model's embeddings of `count` held-out images, projected on their first two principal components."""
    x, y = held_out.x[:count], held_out.y[:count].cpu()
    figure, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.6), squeeze=False)
    for ax, (title, model) in zip(axes[0], models.items()):
        points = _principal_plane(embed(model, x).cpu())
        for label in y.unique().tolist():
            chosen = y == label
            ax.scatter(points[chosen, 0], points[chosen, 1], s=4, alpha=0.6, label=classes[label])
        ax.set(title=title, xticks=[], yticks=[])
    axes[0][-1].legend(fontsize=7, markerscale=3, loc="best")
    figure.tight_layout()
    return figure


def _principal_plane(points: Tensor) -> Tensor:
    centred = points - points.mean(dim=0)
    _, _, vectors = torch.linalg.svd(centred, full_matrices=False)
    return centred @ vectors[:2].T


DEPARTURES = """
- Data (profile `cpu`): Fashion-MNIST instead of CUB-200-2011 / Cars 196 / Stanford Online Products. Metric
  learning trains on classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat) of a 2,500-image training draw and
  measures Recall@K on the 5,000 test images of classes 5-9, which it never saw.
- Data (profile `paper`): CUB-200-2011, as the paper: species 1-100 (5,864 images) train, Recall@K is measured on
  species 101-200 (5,924 images); Cars 196 and Stanford Online Products are not read. Every image is squashed to
  224 x 224 and normalised by the training images' per-channel mean and std; the authors squash to 256 x 256, train
  on random 224 x 224 crops and test on the centre crop, with ImageNet's statistics. Here training translates the
  224 x 224 image by up to 16 pixels (zero padding) and flips it, and the test sees the whole image.
- Networks (profile `cpu`): teacher ResNet-14 (8-8-16-32) with a 64-d embedding, students ResNet-8 (8-8-16-32) with
  a 16-d embedding, all from scratch, instead of an ImageNet-pretrained ResNet-50 (512-d) and ResNet-18 (128-d or
  less). The ratio of embedding sizes (4:1) is the paper's 512:128.
- Networks (profile `paper`): torchvision's ResNet-50 (teacher, 512-d) and ResNet-18 (students, 128-d), a linear
  embedding on the pooled features as in the authors' code, but from random initialisation: the paper starts from
  ImageNet-pretrained weights, which are not downloaded here. Expect Recall@K well below the paper's.
- Triplet loss: every valid triplet of the batch, averaged over those that violate the margin 0.2, on class-balanced
  batches (profile `cpu`: 5 classes x 25 images; `paper`: 25 species x 5 images, about the authors' sampler, which
  takes 5 images of each species until it has 128); the paper samples triplets by distance-weighted sampling. Every
  metric-learning arm sees the same class-balanced batches.
- Optimiser (profile `cpu`): Adam, learning rate 1e-3 with a cosine schedule, 8 epochs for every metric-learning
  arm, teacher included (the paper: Adam 1e-4 on pretrained networks).
- Optimiser (profile `paper`): every metric-learning arm, teacher included, trains with the authors' student recipe:
  Adam 1e-4, weight decay 1e-5, 80 epochs, x0.1 at epochs 40 and 60. An epoch here is one pass over the training
  images (46 batches), the authors' is 100 batches: 3,680 updates instead of 8,000. The authors' teacher trains for
  40 epochs (Adam 1e-5, halved at 25, 30 and 35) from ImageNet weights; from scratch it gets the longer schedule.
- RKD losses are averaged over all N^2 pairs and N^3 triplets (the authors' code); lambda_D = 1, lambda_A = 2 for
  metric learning, 25 and 50 for classification, as in the paper.
- Classification (profile `cpu`): ResNet-14 -> ResNet-8 on Fashion-MNIST, 2,500 images, 8 epochs, SGD 0.05 cosine,
  weight decay 5e-4; KD at T = 4 with weight 0.9 on the soft term and 0.1 on the hard labels (RepDistiller's
  setting), the RKD term on the pooled 32-d features. The paper's own CIFAR-100 KD settings were not found.
- Classification (profile `paper`): the CIFAR-100 benchmark's resnet56 -> resnet20 pair and recipe (RepDistiller:
  240 epochs, SGD 0.05, x0.1 at 150, 180 and 210, batch 64), 45,000 training images and 5,000 for validation, the
  same KD and RKD weights as profile `cpu`; the RKD term on the pooled 64-d features.
- Every number is the last epoch's, never the best epoch's.
"""
