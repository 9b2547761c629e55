"""Park, Kim, Lu & Cho 2019, "Relational Knowledge Distillation" (arXiv 1904.05068), CVPR.

Relation-based (between examples), offline: the student learns the distances and angles that the teacher's
embeddings of a batch form, not the embeddings themselves; so its embedding may be smaller than the teacher's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import Tensor, nn

from kdrepro import cub
from kdrepro.arms import Arm, Net, Rows
from kdrepro.claims import Claim, Precondition
from kdrepro.data import Data, Split, load_data
from kdrepro.experiment import Run, at_seeds
from kdrepro.measures import Classification
from kdrepro.metric_learning import Embedder, RecallAtK, embed, held_out_classes
from kdrepro.objectives.relation import RKD, RKDWithKD
from kdrepro.objectives.response import ResponseKD
from kdrepro.objectives.task import CrossEntropy, Triplet
from kdrepro.paper import Comparison, Paper
from kdrepro.tables import mean_std, runs_by_arm
from kdrepro.train import Recipe

PAPER = Paper("rkd", "Park, Kim, Lu & Cho 2019: Relational Knowledge Distillation",
              "05_rkd.ipynb", transferred="relation", scheme="offline",
              comparison=Comparison("RKD", "triplet", ("rkd_d", "rkd_a", "rkd_da"), "recall_at_1"))

KS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Protocol:
    dataset: str                    # classification, and metric learning too unless metric_dataset names another
    train_size: int | None          # images of the official training set a seed draws (None: all the rest)
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
    image_size: int | None = None       # (labels 0-99), 101-200 held out; every image resized to image_size pixels
    classifier_teacher: str | dict | None = None  # the classification arms' networks (None: teacher, student)
    classifier_student: str | dict | None = None
    teacher_seed: int = 0               # one teacher per task, trained at this seed, for every seed's students
    student_fraction: float = 1.0       # of each seed's training draw the students learn from (the teachers: all)

    @property
    def classifiers(self) -> tuple[str | dict, str | dict]:
        """(teacher, student) of the classification arms."""
        return (self.teacher if self.classifier_teacher is None else self.classifier_teacher,
                self.student if self.classifier_student is None else self.classifier_student)


SMALL_TEACHER = {"family": "resnet", "depth": 14, "channels": (8, 8, 16, 32)}
SMALL_STUDENT = {"family": "resnet", "depth": 8, "channels": (8, 8, 16, 32)}
THIN_STUDENT = {"family": "resnet", "depth": 8, "channels": (4, 4, 8, 16)}
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
                      classifier_weights=(25.0, 50.0), image_size=14, student_fraction=0.5),
    # one teacher per task on a seed's draw of 10,000 images (at 14 x 14 pixels), each seed's students on a quarter
    # of their own draw: the teachers clearly lead (the precondition), and every seed pays only for its students
    "cpu": Protocol("fashion_mnist", train_size=10000, val_size=2000, seeds=(0, 1, 2, 3, 4),
                    train_classes=(0, 1, 2, 3, 4), teacher=SMALL_TEACHER, student=THIN_STUDENT, teacher_dim=64,
                    student_dim=8, margin=0.2, per_class=4, metric_recipe=replace(METRIC_RECIPE, epochs=12),
                    metric_weights=(1.0, 2.0), classifier_recipe=replace(CLASSIFIER_RECIPE, epochs=6),
                    temperature=4.0, hard_weight=0.1, classifier_weights=(25.0, 50.0), image_size=14,
                    student_fraction=0.25),
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

METRIC_ARMS = ("teacher", "triplet", "rkd_d", "rkd_a", "rkd_da")
CLASSIFICATION_ARMS = ("classifier_teacher", "ce", "kd", "kd_rkd")

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
    # the control the paper lacks: does KD itself help this student, before RKD is added to it?
    Claim("Classification control: Hinton KD beats the cross-entropy student", better="kd", worse="ce",
          paper=(100 - 69.06, 100 - 70.66), source="CIFAR-100 error %, RepDistiller benchmark resnet56 -> resnet20",
          preconditions=(Precondition("classifier_teacher", "ce"),)),
]


def load(protocol: Protocol) -> Data:
    """The metric-learning data (`held_out_classes`): training images of the training classes, validation and test
    images of the others. From CUB-200-2011 when the profile names it (it is never downloaded), else from
    `dataset`, which the classification arms read whole."""
    if protocol.metric_dataset is None:
        data = load_classifier_data(protocol)
    elif protocol.metric_dataset == "cub200":
        data = cub.load_cub(protocol.image_size or cub.DEFAULT_SIZE).first_test(protocol.test_size)
    else:
        raise ValueError(f"metric_dataset={protocol.metric_dataset!r}: only 'cub200' (or None) is read")
    return held_out_classes(data, protocol.train_classes)


def load_classifier_data(protocol: Protocol) -> Data:
    """The classification arms' data: every class of `dataset`."""
    return load_data(protocol.dataset, train_size=protocol.train_size, val_size=protocol.val_size,
                     download=protocol.download, image_size=protocol.image_size).first_test(protocol.test_size)


def arms(p: Protocol) -> dict[str, Arm]:
    """Every arm, at seed 0 (`Arm.at` moves one to another seed). One teacher per task, as the paper's, trained
    once at `teacher_seed` on that seed's whole training draw (a shared arm: `at` leaves it there); each seed's
    students learn from `student_fraction` of their own seed's draw, the same rows for every student of a seed.

    Metric learning: a teacher with a large embedding trained by the triplet loss; students with a smaller one
    trained by the same loss (L2-normalised, like the teacher) or by the teacher's relations alone, RKD-D, RKD-A
    or both (no label, no normalisation: the paper's best students). Every metric-learning arm draws
    class-balanced batches; the students share their initial weights and batches.
    Classification: a teacher, and three students from the same initial weights: cross-entropy alone (the
    control that shows what KD itself adds), Hinton KD, and Hinton KD plus RKD-DA on the pooled features before
    the classifier."""
    triplet = Triplet(p.margin, p.per_class)
    rows = Rows(fraction=p.student_fraction, same_steps=False)
    teacher = Arm("teacher", Embedder(p.teacher, p.teacher_dim, normalize=True, init="teacher"), triplet,
                  p.metric_recipe, seed=p.teacher_seed, shared=True)
    distance, angle = p.metric_weights

    def rkd(name: str, distance_weight: float, angle_weight: float) -> Arm:
        return Arm(name, Embedder(p.student, p.student_dim, normalize=False),
                   RKD(distance_weight, angle_weight, p.per_class), p.metric_recipe, teacher, rows)

    classifier_teacher = Arm("classifier_teacher", Net(p.classifiers[0], "classifier teacher"), CrossEntropy(),
                             p.classifier_recipe, seed=p.teacher_seed, shared=True)
    classifier_student = Net(p.classifiers[1], "classifier student")
    return {
        "teacher": teacher,
        "triplet": Arm("triplet", Embedder(p.student, p.student_dim, normalize=True), triplet, p.metric_recipe,
                       rows=rows),
        "rkd_d": rkd("rkd_d", distance, 0.0),
        "rkd_a": rkd("rkd_a", 0.0, angle),
        "rkd_da": rkd("rkd_da", distance, angle),
        "classifier_teacher": classifier_teacher,
        "ce": Arm("ce", classifier_student, CrossEntropy(), p.classifier_recipe, rows=rows),
        "kd": Arm("kd", classifier_student, ResponseKD(p.temperature, p.hard_weight), p.classifier_recipe,
                  classifier_teacher, rows),
        "kd_rkd": Arm("kd_rkd", classifier_student,
                      RKDWithKD(p.temperature, p.hard_weight, *p.classifier_weights), p.classifier_recipe,
                      classifier_teacher, rows),
    }


def metric_measure(p: Protocol) -> RecallAtK:
    """The metric-learning arms' reading: Recall@1, 2, 4 and 8 on the held-out classes."""
    return RecallAtK(KS)


def datasets(p: Protocol) -> dict[str, Data]:
    """Metric learning's view of the dataset ("main": Recall@K on classes never trained on), and classification's."""
    return {"main": load(p), "classifier": load_classifier_data(p)}


def runs(p: Protocol) -> list[Run]:
    """Every run the notebook makes, cell by cell: what `python -m kdrepro plan` lists and `work` trains."""
    a = arms(p)
    return ([Run(a["teacher"], metric_measure(p))]
            + at_seeds([a[name] for name in METRIC_ARMS[1:]], p.seeds, metric_measure(p))
            + [Run(a["classifier_teacher"], Classification(), "classifier")]
            + at_seeds([a[name] for name in CLASSIFICATION_ARMS[1:]], p.seeds, Classification(), "classifier"))


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
        "ce": ("student, cross-entropy alone (control)", "CIFAR-100 bench. resnet20: 69.06"),
        "kd": ("student, Hinton KD", "CIFAR-100 74.26 (low-trust summary); bench. resnet20 KD: 70.66"),
        "kd_rkd": ("student, Hinton KD + RKD-DA (25/50)",
                   "CIFAR-100 74.66 (low-trust summary); bench. resnet20 RKD alone: 69.61"),
    }


def metric_table(runs: pd.DataFrame, protocol: Protocol) -> list[dict[str, object]]:
    described, table = arm_descriptions(protocol), []
    for arm, rows in runs_by_arm(runs, METRIC_ARMS):
        what, paper = described[arm]
        table.append({"arm": arm, "what": what, **{f"R@{k} %": mean_std(rows[f"recall_at_{k}"], 100) for k in KS},
                      "seeds": len(rows), "paper": paper})
    return table


def classification_table(runs: pd.DataFrame, protocol: Protocol) -> list[dict[str, object]]:
    table = []
    for arm, rows in runs_by_arm(runs, CLASSIFICATION_ARMS):
        what, paper = arm_descriptions(protocol)[arm]
        table.append({"arm": arm, "what": what, "test accuracy %": mean_std(1 - rows["test_error"], 100),
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
- Data (profile `cpu`): Fashion-MNIST instead of CUB-200-2011 / Cars 196 / Stanford Online Products, every image
  area-averaged to 14 x 14 pixels (a quarter of a convolution's cost, which pays for five seeds). Metric learning
  trains on classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat) and measures Recall@K on the 5,000 test
  images of classes 5-9, which it never saw; validation Recall@1 (preconditions, pilot) on the 2,000 validation
  images' held-out classes (about 1,000). Each seed draws its own 10,000 training images (validation excluded; for
  metric learning, the draw's images of classes 0-4, about 4,900); the pool it draws from holds the training
  classes alone, so no seed trains on a held-out class.
- One teacher per task (profile `cpu`, and `paper`), as the paper's: trained once, at seed 0, on that seed's whole
  draw, and recorded beside every seed's students, which are paired with it. Each seed's students learn from a
  quarter of their own seed's draw (about 1,225 images for metric learning, 2,500 for classification), the same
  images for every student of a seed. The teacher's larger training set stands in for the paper's pretrained
  teacher: it is what makes the teacher clearly better than its students (see the pilot below); with the
  students' images and updates, the committed runs before had a teacher barely above its triplet student (67.6
  against 66.5 test Recall@1). The claim "RKD-DA matches its teacher" therefore
  compares a student with a teacher that had four times the images and updates, as a distilled student in the
  paper faces a stronger, pretrained teacher.
- Pilot (seeds 100-102, validation only, `results/cpu/pilots/rkd.csv`; run on another machine's CPU at one thread,
  PyTorch 2.11, as this one was too loaded): validation Recall@1 teacher 63.5, triplet student 49.3, RKD-D 57.7,
  RKD-A 57.4, RKD-DA 57.3; validation error classification teacher 15.1%, cross-entropy student 31.7%, KD 32.5%,
  KD + RKD-DA 28.0%: every precondition holds. SD of the paired gains (Recall@1 / error points) and MDE at 5 seeds
  against the SESOI: RKD-DA vs triplet 4.6, MDE 6.2 vs 2.5; RKD-D vs triplet 6.2, MDE 8.4 vs 2.5; RKD-A vs
  triplet 5.1, MDE 6.9 vs 2.5; RKD-DA within 1 point of its teacher 2.5, MDE 3.3 (pilot gain -6.3); KD + RKD-DA
  vs KD 1.7, MDE 2.4 vs 0.25; KD vs cross-entropy 1.2, MDE 1.6 vs 0.8. Five seeds are what the budget (330 CPU
  seconds at one thread) allows; the metric-learning claims would need 23-41 seeds for an MDE at their SESOI, the
  classification claims 15 (control) and about 300: an effect at the SESOI may go unseen, and the verdicts say
  "inconclusive" where it does. The observed pilot gains (8 points of Recall@1, 4.5 points of error) are well
  above these MDEs.
- Data (profile `paper`): CUB-200-2011, as the paper: species 1-100 (5,864 images) train, Recall@K is measured on
  species 101-200 (5,924 images); Cars 196 and Stanford Online Products are not read. Every image is squashed to
  224 x 224 and normalised by the training images' per-channel mean and std; the authors squash to 256 x 256, train
  on random 224 x 224 crops and test on the centre crop, with ImageNet's statistics. Here training translates the
  224 x 224 image by up to 16 pixels (zero padding) and flips it, and the test sees the whole image.
- Networks (profile `cpu`): teacher ResNet-14 (8-8-16-32) with a 64-d embedding, students ResNet-8 (4-4-8-16, a
  thin one: the capacity gap the paper's ResNet-50 -> ResNet-18 has) with an 8-d embedding, all from scratch,
  instead of an ImageNet-pretrained ResNet-50 (512-d) and ResNet-18 (128-d or less). The ratio of embedding sizes
  (8:1) is the paper's 512:64. The classification arms use the same two networks.
- Networks (profile `paper`): torchvision's ResNet-50 (teacher, 512-d) and ResNet-18 (students, 128-d), a linear
  embedding on the pooled features as in the authors' code, but from random initialisation: the paper starts from
  ImageNet-pretrained weights, which are not downloaded here. Expect Recall@K well below the paper's.
- Triplet loss: every valid triplet of the batch, averaged over those that violate the margin 0.2, on class-balanced
  batches (profile `cpu`: 5 classes x 25 images; `paper`: 25 species x 5 images, about the authors' sampler, which
  takes 5 images of each species until it has 128); the paper samples triplets by distance-weighted sampling. Every
  metric-learning arm sees the same class-balanced batches.
- Optimiser (profile `cpu`): Adam, learning rate 1e-3 with a cosine schedule, 12 epochs for every metric-learning
  arm, teacher included (the paper: Adam 1e-4 on pretrained networks): about 460 updates for the teacher, 120 for
  each student (the committed runs before had about 80 for every arm, with a teacher barely above its student).
  Every student of a claim gets the same updates on the same batches.
- Optimiser (profile `paper`): every metric-learning arm, teacher included, trains with the authors' student recipe:
  Adam 1e-4, weight decay 1e-5, 80 epochs, x0.1 at epochs 40 and 60. An epoch here is one pass over the training
  images (46 batches), the authors' is 100 batches: 3,680 updates instead of 8,000. The authors' teacher trains for
  40 epochs (Adam 1e-5, halved at 25, 30 and 35) from ImageNet weights; from scratch it gets the longer schedule.
- RKD losses are averaged over all N^2 pairs and N^3 triplets (the authors' code); lambda_D = 1, lambda_A = 2 for
  metric learning, 25 and 50 for classification, as in the paper.
- Classification (profile `cpu`): ResNet-14 -> ResNet-8 (4-4-8-16) on Fashion-MNIST at 14 x 14, 6 epochs, SGD 0.05
  cosine, weight decay 5e-4: the teacher on its draw of 10,000 images (about 470 updates), each student on 2,500
  (120 updates, the same for the three students); KD at T = 4 with weight 0.9 on the soft term and 0.1 on the
  hard labels (RepDistiller's setting), the RKD term on the pooled features (32-d teacher, 16-d student). The
  paper's own CIFAR-100 KD settings were not found.
- A control the paper lacks: a student trained by cross-entropy alone beside the KD students, so that "RKD adds to
  KD" can be read against what KD itself adds; its claim (KD beats it) takes the RepDistiller benchmark's
  resnet20 numbers (69.06% alone, 70.66% with KD) for its SESOI.
- Classification (profile `paper`): the CIFAR-100 benchmark's resnet56 -> resnet20 pair and recipe (RepDistiller:
  240 epochs, SGD 0.05, x0.1 at 150, 180 and 210, batch 64), 45,000 training images and 5,000 for validation, the
  same KD and RKD weights as profile `cpu`; the RKD term on the pooled 64-d features.
- Every number is the last epoch's, never the best epoch's.
"""
