"""RKD: the objectives, and the experiment end to end on tiny CUB-200-2011 and CIFAR-100 files (the `paper`
profile's code path)."""

import copy
import json
from dataclasses import replace
from functools import partial

import pytest
import torch
from conftest import write_cifar
from tiny_profiles import use_paper_profile, write_cub

from kdrepro.data import Batch, Data, Split
from kdrepro.experiment import Experiment
from kdrepro.experiments import rkd
from kdrepro.losses.relation import rkd_loss
from kdrepro.metric_learning import Embedder
from kdrepro.models import ResNet, build, count_parameters
from kdrepro.relation_distillation import RelationalDistillation
from kdrepro.schemes import FeatureDistillation


def batch(n=6):
    g = torch.Generator().manual_seed(0)
    return Batch(torch.randn(n, 1, 12, 12, generator=g), torch.randint(0, 10, (n,), generator=g), torch.arange(n))


@pytest.mark.parametrize("backbone", [partial(ResNet, 8, (4, 4, 8, 8)), partial(build, "tv_resnet18")],
                         ids=["cifar_resnet", "tv_resnet18"])
def test_a_student_embedding_the_teachers_relations_pays_nothing(backbone):
    torch.manual_seed(0)
    teacher = Embedder(backbone(num_classes=12, in_channels=1), normalize=True)
    student = copy.deepcopy(teacher).eval()
    assert RelationalDistillation(teacher, 1.0, 2.0).loss(student, batch()).item() == pytest.approx(0.0, abs=1e-6)


def test_rkd_on_the_penultimate_layer_accepts_embeddings_of_different_sizes():
    torch.manual_seed(0)
    teacher, student = ResNet(8, (4, 4, 8, 16), in_channels=1).eval(), ResNet(8, (4, 4, 8, 8), in_channels=1).eval()
    b = batch()
    relation = partial(rkd_loss, distance_weight=25.0, angle_weight=50.0)
    objective = FeatureDistillation(teacher, [("embedding", "embedding")], relation, weight=1.0)
    pooled = lambda model: model.embedding(model.pool(model.layer3(model.layer2(model.layer1(model.stem(b.x))))))  # noqa: E731
    expected = rkd_loss(pooled(student), pooled(teacher), 25.0, 50.0) + torch.nn.functional.cross_entropy(
        student(b.x), b.y)
    torch.testing.assert_close(objective.loss(student, b), expected)


def test_impossible_rkd_weights_are_refused_before_training():
    with pytest.raises(ValueError, match="non-negative"):
        RelationalDistillation(ResNet(8, (4, 4, 8, 8), in_channels=1), -1.0, 2.0)


def test_metric_learning_measures_recall_on_classes_never_trained_on():
    x = torch.zeros(10, 1, 2, 2)
    y = torch.arange(10)
    data = Data("toy", Split(x, y), Split(x, y), Split(x, y), tuple(map(str, range(10))))
    train, held_out = rkd.metric_splits(data, (0, 1, 2))
    assert train.y.tolist() == [0, 1, 2] and held_out.y.tolist() == list(range(3, 10))


def test_every_claim_names_arms_the_notebook_runs():
    arms = set(rkd.arm_descriptions(rkd.PROFILES["cpu"]))
    assert all({c.better, c.worse} <= arms for c in rkd.CLAIMS)


# torchvision's counts (its model documentation): ResNet-18 11,689,512 and ResNet-50 25,557,032 parameters with
# the 1000-class ImageNet layer
@pytest.mark.parametrize("name, parameters", [("tv_resnet18", 11_689_512), ("tv_resnet50", 25_557_032)])
def test_torchvision_resnets_have_the_published_parameter_counts(name, parameters):
    assert count_parameters(build(name, num_classes=1000)) == parameters


def test_a_torchvision_resnet_embeds_in_the_asked_dimension():
    torch.manual_seed(0)
    embedder = Embedder(build("tv_resnet18", 128), normalize=True).eval()
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
    run = rkd.RKD(exp, rkd.load(exp.protocol))
    assert run.data.name == "cub200" and run.data.input_shape == (3, 16, 16)
    assert run.metric_train.y.unique().tolist() == [0, 1] and run.held_out.y.unique().tolist() == [100, 101]
    assert run.classifier_data.name == "cifar100" and len(run.classifier_data.train) == 250
    assert run.data_key == {"dataset": "cub200", "train_size": 10, "val_size": 0, "image_size": 16}  # cache key
    for seed in exp.protocol.seeds:
        run.metric_teacher_arm(seed)
        for arm in rkd.METRIC_ARMS:
            run.metric_student_arm(arm, seed)
        for arm in ("classifier_teacher", "kd", "kd_rkd"):
            run.classifier_arm(arm, seed)
    runs = exp.runs
    assert set(runs.groupby("arm")["seed"].count()) == {2}
    recalls = runs.dropna(subset=["recall_at_1"])
    assert len(recalls) == 10 and (recalls["recall_at_1"] <= recalls["recall_at_8"]).all()
    assert runs.dropna(subset=["test_accuracy"])["test_accuracy"].between(0, 1).all()
    assert run.metric_student("rkd_da", 0)(run.held_out.x[:4]).shape == (4, 8)
    figure = rkd.plot_embeddings({"teacher": run.metric_teacher(0), "rkd_da": run.metric_student("rkd_da", 0)},
                                 run.held_out, run.data.classes, count=40)
    table = rkd.results_table(runs, exp.protocol)
    folder = exp.save(table, exp.judge(rkd.CLAIMS), {"embeddings": figure}, notes=rkd.DEPARTURES)
    claims = json.loads((folder / "claims.json").read_text())
    assert len(claims) == len(rkd.CLAIMS) and all(c["seeds"] == 2 for c in claims)
    assert (folder / "figures" / "embeddings.png").stat().st_size > 1000
    assert [row["arm"] for row in table] == ["teacher", *rkd.METRIC_ARMS, "classifier_teacher", "kd", "kd_rkd"]
    assert table[0]["test accuracy %"] == "" and table[-1]["R@1 %"] == ""
