"""Relation-based objectives (kdrepro.objectives.relation): each term checked against the loss functions by hand."""

import copy
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from kdrepro.data import Batch, Split
from kdrepro.losses.relation import fsp_loss, fsp_matrix, rkd_angle_loss, rkd_distance_loss
from kdrepro.losses.response import kd_loss
from kdrepro.metric_learning import EmbeddingNet
from kdrepro.models import ResNet, build
from kdrepro.objectives import Context
from kdrepro.objectives.relation import FSP, RKD, RKDWithKD, fsp_matrices
from kdrepro.schemes import Teacher
from kdrepro.seeds import seeded
from kdrepro.train import Recipe, fit

PAIRS = (("stem", "layer1"), ("layer1", "layer2"), ("layer2", "layer3"))


def batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, 1, 12, 12, generator=g), torch.randint(0, 10, (n,), generator=g), torch.arange(n))


def resnet(depth, channels, seed=0, **options):
    with seeded(seed, "test"):
        return ResNet(depth, channels, in_channels=1, **options).eval()


def stages(model, x):
    """The outputs of the stem and the three stages, computed by calling the network's parts in turn."""
    stem = model.stem(x)
    layer1 = model.layer1(stem)
    layer2 = model.layer2(layer1)
    return {"stem": stem, "layer1": layer1, "layer2": layer2, "layer3": model.layer3(layer2)}


def pooled(model, x):
    """The pooled features before the classifier, computed by hand."""
    return model.pool(stages(model, x)["layer3"]).flatten(1)


# --- FSP ----------------------------------------------------------------------------------------------------------

def test_the_fsp_term_is_the_weighted_sum_over_stages_of_the_matrices_distance():
    teacher, student = resnet(14, (4, 4, 8, 8)), resnet(8, (4, 4, 8, 8), seed=1)
    b = batch()
    s, t = stages(student, b.x), stages(teacher, b.x)
    weights = (1.0, 0.5, 2.0)
    expected = sum(w * fsp_loss(fsp_matrix(s[a], s[c]), fsp_matrix(t[a], t[c])) for w, (a, c) in zip(weights, PAIRS))
    terms = FSP(PAIRS, weights).terms(student, b, Context(teacher=Teacher(teacher, b.x)))
    assert list(terms) == ["fsp"]
    torch.testing.assert_close(terms["fsp"], expected)


def test_equal_fsp_weights_are_the_default():
    teacher, student = resnet(14, (4, 4, 8, 8)), resnet(8, (4, 4, 8, 8), seed=1)
    b = batch()
    context = Context(teacher=Teacher(teacher, b.x))
    torch.testing.assert_close(FSP(PAIRS).terms(student, b, context)["fsp"],
                               FSP(PAIRS, (1.0, 1.0, 1.0)).terms(student, b, context)["fsp"])


def test_a_student_identical_to_its_teacher_has_no_fsp_loss():
    teacher = resnet(14, (4, 4, 8, 8))
    b = batch()
    terms = FSP(PAIRS).terms(copy.deepcopy(teacher), b, Context(teacher=Teacher(teacher, b.x)))
    assert terms["fsp"].item() == pytest.approx(0.0, abs=1e-7)


def test_fsp_matrices_are_each_pairs_matrix_of_the_named_layers():
    model, b = resnet(8, (4, 4, 8, 8)), batch()
    s = stages(model, b.x)
    matrices = fsp_matrices(model, b.x, PAIRS)
    assert list(matrices) == list(PAIRS)
    torch.testing.assert_close(matrices[("layer1", "layer2")], fsp_matrix(s["layer1"], s["layer2"]))


def test_channel_counts_that_differ_name_the_layers():
    teacher, student = resnet(8, (4, 4, 8, 8)), resnet(8, (4, 4, 8, 16))
    b = batch()
    with pytest.raises(ValueError, match="layers 'layer2' -> 'layer3'.*\\(8, 16\\).*\\(8, 8\\)"):
        FSP(PAIRS).terms(student, b, Context(teacher=Teacher(teacher, b.x)))


@pytest.mark.parametrize("weights", [(1.0,), (1.0, -1.0, 1.0), (1.0, math.nan, 1.0)])
def test_fsp_weights_are_refused_when_the_objective_is_declared(weights):
    with pytest.raises(ValueError, match="one non-negative weight per layer pair"):
        FSP(PAIRS, weights)


def test_fsp_without_a_teacher_says_so():
    with pytest.raises(ValueError, match="FSP distils from a teacher, but the run has none"):
        FSP(PAIRS).terms(resnet(8, (4, 4, 8, 8)), batch(), Context())


# --- RKD for metric learning --------------------------------------------------------------------------------------

def embedders(normalize_teacher=True):
    with seeded(0, "test"):
        teacher = EmbeddingNet(ResNet(8, (4, 4, 8, 16), num_classes=12, in_channels=1), normalize_teacher).eval()
        student = EmbeddingNet(ResNet(8, (4, 4, 8, 8), num_classes=5, in_channels=1), False).eval()
    return teacher, student


def test_the_rkd_terms_are_the_weighted_distance_and_angle_losses_of_the_embeddings():
    teacher, student = embedders()
    b = batch()
    terms = RKD(1.0, 2.0).terms(student, b, Context(teacher=Teacher(teacher, b.x)))
    with torch.no_grad():
        t = teacher(b.x)
    s = student(b.x)
    assert list(terms) == ["rkd_distance", "rkd_angle"]
    torch.testing.assert_close(terms["rkd_distance"], rkd_distance_loss(s, t))
    torch.testing.assert_close(terms["rkd_angle"], 2.0 * rkd_angle_loss(s, t))


def test_a_zero_weight_drops_its_rkd_term():
    teacher, student = embedders()
    b = batch()
    context = Context(teacher=Teacher(teacher, b.x))
    assert list(RKD(1.0, 0.0).terms(student, b, context)) == ["rkd_distance"]
    assert list(RKD(0.0, 2.0).terms(student, b, context)) == ["rkd_angle"]


def test_rkd_reads_the_teachers_embeddings_of_the_batchs_rows():
    """The offline teacher's embeddings of the whole split are computed once; a batch reads its rows."""
    teacher, student = embedders()
    x = batch(10).x
    rows = torch.tensor([7, 2, 5, 0])
    b = Batch(x[rows], torch.zeros(4, dtype=torch.long), rows)
    terms = RKD(1.0, 2.0).terms(student, b, Context(teacher=Teacher(teacher, x)))
    with torch.no_grad():
        t = teacher(x[rows])
    torch.testing.assert_close(terms["rkd_distance"], rkd_distance_loss(student(x[rows]), t))


@pytest.mark.parametrize("backbone", [partial(ResNet, 8, (4, 4, 8, 8)), partial(build, "tv_resnet18")],
                         ids=["cifar_resnet", "tv_resnet18"])
def test_a_student_embedding_the_teachers_relations_pays_nothing(backbone):
    with seeded(0, "test"):
        teacher = EmbeddingNet(backbone(num_classes=12, in_channels=1), normalize=True).eval()
    b = batch()
    terms = RKD(1.0, 2.0).terms(copy.deepcopy(teacher), b, Context(teacher=Teacher(teacher, b.x)))
    assert sum(terms.values()).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("weights", [(-1.0, 2.0), (0.0, 0.0), (math.inf, 2.0)])
def test_impossible_rkd_weights_are_refused_when_the_objective_is_declared(weights):
    with pytest.raises(ValueError, match="RKD weights must be non-negative, finite and not both zero"):
        RKD(*weights)
    with pytest.raises(ValueError, match="RKD weights must be non-negative, finite and not both zero"):
        RKDWithKD(4.0, 0.1, *weights)


def test_rkd_draws_class_balanced_batches_when_given_a_per_class_count():
    assert RKD(1.0, 2.0).sampler() is None
    teacher, student = embedders()
    split = Split(batch(40).x, torch.arange(40) % 4)
    seen = []

    class Spy(RKD):
        def terms(self, model, b, context):
            seen.append(torch.bincount(b.y, minlength=4).tolist())
            return super().terms(model, b, context)

    fit(student, Spy(1.0, 2.0, per_class=4), split, Recipe(epochs=1, batch_size=16, lr=1e-3, optimizer="adam"),
        seed=0, teacher=Teacher(teacher, split.x), progress_seconds=None)
    assert seen == [[4, 4, 4, 4]] * 3


# --- RKD on the penultimate layer, with Hinton KD -----------------------------------------------------------------

def test_rkd_with_kd_adds_the_relations_of_the_pooled_features_to_hintons_terms():
    """The penultimate layers differ in size (16 and 8 features): relations compare all the same."""
    teacher, student = resnet(8, (4, 4, 8, 16)), resnet(8, (4, 4, 8, 8), seed=1)
    b = batch()
    terms = RKDWithKD(4.0, 0.1, 25.0, 50.0).terms(student, b, Context(teacher=Teacher(teacher, b.x)))
    s, t = pooled(student, b.x), pooled(teacher, b.x)
    logits = student(b.x)
    assert list(terms) == ["ce", "kd", "rkd_distance", "rkd_angle"]
    torch.testing.assert_close(terms["ce"], 0.1 * F.cross_entropy(logits, b.y))
    torch.testing.assert_close(terms["kd"], 0.9 * kd_loss(logits, teacher(b.x), 4.0))
    torch.testing.assert_close(terms["rkd_distance"], 25.0 * rkd_distance_loss(s, t))
    torch.testing.assert_close(terms["rkd_angle"], 50.0 * rkd_angle_loss(s, t))


def test_rkd_with_kd_refuses_an_impossible_temperature_when_declared():
    with pytest.raises(ValueError, match="temperature"):
        RKDWithKD(0.0, 0.1, 25.0, 50.0)
