"""RKD: the arms, and the experiment end to end on tiny CUB-200-2011 and CIFAR-100 files (the `paper` profile's
code path). The objectives are tested with the other relation-based ones (tests/test_relation_objectives.py)."""

import json
from dataclasses import replace
from functools import partial

import pytest
import torch
from conftest import write_cifar
from tiny_profiles import use_paper_profile, write_cub

from kdrepro.arms import Rows
from kdrepro.experiment import Experiment
from kdrepro.experiments import rkd
from kdrepro.measures import Classification
from kdrepro.metric_learning import EmbeddingNet
from kdrepro.models import build, count_parameters
from kdrepro.objectives.relation import RKD, RKDWithKD
from kdrepro.objectives.response import ResponseKD
from kdrepro.objectives.task import CrossEntropy, Triplet


def test_every_claim_names_arms_the_notebook_runs():
    arms = rkd.arms(rkd.PROFILES["cpu"])
    assert set(rkd.arm_descriptions(rkd.PROFILES["cpu"])) == set(arms) == {*rkd.METRIC_ARMS, *rkd.CLASSIFICATION_ARMS}
    assert all({c.better, c.worse} <= set(arms) for c in rkd.CLAIMS)


def test_metric_students_share_their_start_and_batches_and_differ_in_objective_and_normalisation():
    p = rkd.PROFILES["cpu"]
    arms = rkd.arms(p)
    students = [arms[name] for name in ("triplet", "rkd_d", "rkd_a", "rkd_da")]
    assert {(a.net.architecture["depth"], a.net.dim, a.net.init) for a in students} == {(8, p.student_dim, "student")}
    assert [a.net.normalize for a in students] == [True, False, False, False]
    assert [a.objective for a in students] == [Triplet(0.2, 4), RKD(1.0, 0.0, 4), RKD(0.0, 2.0, 4), RKD(1.0, 2.0, 4)]
    assert all(a.teacher == arms["teacher"] for a in students[1:]) and students[0].teacher is None
    teacher = arms["teacher"]
    assert (teacher.net.dim, teacher.net.normalize, teacher.objective) == (p.teacher_dim, True, Triplet(0.2, 4))
    assert {a.recipe for a in [teacher, *students]} == {p.metric_recipe}
    assert {a.rows for a in students} == {Rows(fraction=0.25, same_steps=False)} and teacher.rows == Rows()


def test_one_teacher_per_task_serves_every_seed_and_is_listed_once():
    p = rkd.PROFILES["cpu"]
    arms = rkd.arms(p)
    for teacher, student in (("teacher", "rkd_da"), ("classifier_teacher", "kd")):
        assert arms[student].at(3).teacher == arms[teacher] and arms[teacher].seed == p.teacher_seed
    names = [run.arm.name for run in rkd.runs(p)]
    assert names.count("teacher") == names.count("classifier_teacher") == 1
    assert names.count("rkd_da") == names.count("ce") == len(p.seeds) == 5


def test_the_cpu_profile_trains_every_seeds_students_on_a_quarter_of_that_seeds_draw_of_training_classes():
    p = rkd.PROFILES["cpu"]
    data, classifier_data = rkd.load(p), rkd.load_classifier_data(p)
    assert data.input_shape == classifier_data.input_shape == (1, 14, 14)
    draws = [data.for_seed(seed).train.y for seed in (0, 1)]
    assert all(set(y.tolist()) == {0, 1, 2, 3, 4} for y in draws) and len(draws[0]) == len(data.train)
    rows = rkd.arms(p)["triplet"].rows
    kept = [rows.select(y, seed) for seed, y in zip((0, 1), draws)]
    assert [len(k) for k in kept] == [round(len(y) / 4) for y in draws] and not torch.equal(kept[0], kept[1])


def test_classification_students_share_their_start_the_control_learns_alone_and_rkd_adds_to_kd():
    p = rkd.PROFILES["cpu"]
    arms = rkd.arms(p)
    ce, kd, kd_rkd = arms["ce"], arms["kd"], arms["kd_rkd"]
    assert ce.net == kd.net == kd_rkd.net and kd.teacher == kd_rkd.teacher == arms["classifier_teacher"]
    assert ce.teacher is None and ce.objective == CrossEntropy() and ce.rows == kd.rows == kd_rkd.rows
    assert kd.objective == ResponseKD(4.0, 0.1) and kd_rkd.objective == RKDWithKD(4.0, 0.1, 25.0, 50.0)
    assert ce.recipe == kd.recipe == kd_rkd.recipe == arms["classifier_teacher"].recipe == p.classifier_recipe


# torchvision's counts (its model documentation): ResNet-18 11,689,512 and ResNet-50 25,557,032 parameters with
# the 1000-class ImageNet layer
@pytest.mark.parametrize("name, parameters", [("tv_resnet18", 11_689_512), ("tv_resnet50", 25_557_032)])
def test_torchvision_resnets_have_the_published_parameter_counts(name, parameters):
    assert count_parameters(build(name, num_classes=1000)) == parameters


def test_a_torchvision_resnet_embeds_in_the_asked_dimension():
    torch.manual_seed(0)
    embedder = EmbeddingNet(build("tv_resnet18", 128), normalize=True).eval()
    with torch.no_grad():
        out = embedder(torch.randn(3, 3, 64, 64))
    assert out.shape == (3, 128) and torch.allclose(out.norm(dim=1), torch.ones(3))


def test_the_paper_profile_learns_metrics_as_the_papers_cub_setting():
    paper = rkd.PROFILES["paper"]
    assert (paper.metric_dataset, paper.train_classes) == ("cub200", tuple(range(100)))  # species 1-100
    assert paper.image_size == 224 and paper.per_class == 5  # the crops; the authors' sampler's 5 per species
    assert (paper.teacher, paper.teacher_dim, paper.student, paper.student_dim) == ("tv_resnet50", 512,
                                                                                    "tv_resnet18", 128)
    assert (paper.margin, paper.metric_weights) == (0.2, (1.0, 2.0))
    assert (paper.metric_recipe.optimizer, paper.metric_recipe.lr) == ("adam", 1e-4)
    assert paper.classifiers == ("resnet56", "resnet20") and paper.dataset == "cifar100"


def test_the_cpu_profile_learns_metrics_and_classes_on_one_dataset():
    cpu = rkd.PROFILES["cpu"]
    assert cpu.metric_dataset is None and cpu.classifiers == (cpu.teacher, cpu.student)


@pytest.fixture
def tiny_paper_profile(monkeypatch, data_dir, isolated):
    write_cifar(data_dir / "cifar-100-python", classes=100, n_per_batch=60)
    write_cub(data_dir, class_ids=(1, 2, 101, 102), per_class=5)  # R@8 needs 9 held-out images
    paper = rkd.PROFILES["paper"]
    small = {"family": "resnet", "depth": 8, "channels": (4, 4, 8, 8)}
    short = partial(replace, epochs=2, milestones=(1,))
    # small networks here: the torchvision ResNets cost seconds per build, and their tests are above
    tiny = replace(paper, train_size=250, val_size=50, seeds=(0, 1), teacher="resnet8", student=small,
                   teacher_dim=16, student_dim=8, image_size=16, classifier_teacher="resnet8", classifier_student=small,
                   metric_recipe=short(paper.metric_recipe, batch_size=10, crop_padding=2),
                   classifier_recipe=short(paper.classifier_recipe))
    return use_paper_profile(monkeypatch, rkd, tiny)


def test_paper_profile_runs_every_arm_and_publishes_results(tiny_paper_profile, isolated):
    exp = Experiment(rkd, "paper", "cpu")
    p = exp.protocol
    data, classifier_data = rkd.load(p), rkd.load_classifier_data(p)
    assert data.name == "cub200, trained on classes 0-99" and data.input_shape == (3, 16, 16)
    assert data.train.y.unique().tolist() == [0, 1] and data.test.y.unique().tolist() == [100, 101]
    assert classifier_data.name == "cifar100" and len(classifier_data.train) == 250
    assert data.key() == {"dataset": "cub200, trained on classes 0-99", "train_size": 10, "val_size": 0,
                          "test_size": len(data.test), "image_size": 16}  # the cache key
    arms = rkd.arms(p)
    exp.run_arms([arms[name] for name in rkd.METRIC_ARMS], data, rkd.metric_measure(p))
    exp.run_arms([arms[name] for name in rkd.CLASSIFICATION_ARMS], classifier_data, Classification())
    runs = exp.runs
    assert set(runs.groupby("arm")["seed"].count()) == {2}
    recalls = runs.dropna(subset=["recall_at_1"])
    assert len(recalls) == 10 and (recalls["recall_at_1"] <= recalls["recall_at_8"]).all()
    assert runs.dropna(subset=["test_error"])["test_error"].between(0, 1).all()
    rkd_da = exp.train(arms["rkd_da"], data)
    assert rkd_da(data.test.x[:4]).shape == (4, 8)
    figure = rkd.plot_embeddings({"teacher": exp.train(arms["teacher"], data), "rkd_da": rkd_da}, data.test,
                                 data.classes, count=40)
    table = rkd.results_table(runs, p)
    folder = exp.save(table, exp.judge(rkd.CLAIMS), {"embeddings": figure}, notes=rkd.DEPARTURES)
    claims = json.loads((folder / "claims.json").read_text())
    assert len(claims) == len(rkd.CLAIMS) and all(c["seeds"] == 2 for c in claims)
    assert (folder / "figures" / "embeddings.png").stat().st_size > 1000
    assert [row["arm"] for row in table] == [*rkd.METRIC_ARMS, *rkd.CLASSIFICATION_ARMS]
    assert table[0]["test accuracy %"] == "" and table[-1]["R@1 %"] == ""
