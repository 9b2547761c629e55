"""Arms as data: the spec is the cache key, the code fingerprint covers only the code that computes results."""

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from kdrepro import experiments
from kdrepro.arms import Arm, Net, Rows, Stage, spec_key, train_arm
from kdrepro.cache import package_fingerprint
from kdrepro.data import Batch, Data, Split
from kdrepro.experiment import Experiment
from kdrepro.experiments import hinton_kd
from kdrepro.objectives.response import ResponseKD
from kdrepro.objectives.task import CrossEntropy
from kdrepro.paths import REPO_ROOT
from kdrepro.schemes import Teacher
from kdrepro.seeds import derive
from kdrepro.train import Recipe, evaluate, fit

RECIPE = Recipe(epochs=2, batch_size=8, lr=0.1)
TEACHER = Arm("teacher", Net({"family": "mlp", "hidden": [8]}, "teacher"), CrossEntropy(), RECIPE)
KD = Arm("kd", Net({"family": "mlp", "hidden": [4]}), ResponseKD(4.0, 0.5), RECIPE, teacher=TEACHER)


def toy_data(n: int = 32, classes: int = 3) -> Data:
    x = torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.arange(n) % classes
    return Data("toy", Split(x, y), Split(x[:8], y[:8]), Split(x[:8], y[:8]), tuple("abc"))


# --- the spec is the key ------------------------------------------------------------------------------------------

ONE_FIELD_CHANGED = {
    "net": Net({"family": "mlp", "hidden": [5]}),
    "objective": ResponseKD(4.0, 0.25),
    "recipe": dataclasses.replace(RECIPE, lr=0.2),
    "teacher": dataclasses.replace(TEACHER, recipe=dataclasses.replace(RECIPE, epochs=3)),
    "rows": Rows(fraction=0.5),
    "seed": 1,
    "shared": True,
    "start": TEACHER,
}


def test_every_field_of_an_arm_but_its_name_is_in_its_key():
    assert {f.name for f in dataclasses.fields(Arm)} - {"name"} == set(ONE_FIELD_CHANGED)


@pytest.mark.parametrize("field", list(ONE_FIELD_CHANGED))
def test_two_arms_that_differ_in_one_field_have_different_keys(field):
    assert dataclasses.replace(KD, **{field: ONE_FIELD_CHANGED[field]}).key() != KD.key()


def test_the_name_is_not_in_the_key_and_the_objective_type_is():
    assert dataclasses.replace(KD, name="kd_T4").key() == KD.key()
    assert spec_key(ResponseKD(4.0, 0.5)) == {"type": "ResponseKD", "temperature": 4.0, "hard_weight": 0.5}


def test_at_moves_an_arm_and_its_teacher_to_another_seed():
    moved = KD.at(3)
    assert moved.seed == 3 and moved.teacher.seed == 3 and KD.seed == 0


def test_at_leaves_a_shared_teacher_at_its_own_seed_while_its_student_moves():
    shared = dataclasses.replace(TEACHER, seed=7, shared=True)
    moved = dataclasses.replace(KD, teacher=shared).at(3)
    assert moved.seed == 3 and moved.teacher is shared and shared.at(3).seed == 7
    assert "one model for every seed, trained at seed 7" in shared.describe()


def test_hintons_omitted_class_teacher_record_holds_the_class(monkeypatch, isolated):
    """The teacher's record is keyed by its measure, which reads the omitted class: a profile with another
    omitted class never reads this one's numbers."""
    monkeypatch.delenv("KDREPRO_PROFILE", raising=False)
    exp = Experiment(hinton_kd, "smoke")
    data = toy_data()
    keys = []
    monkeypatch.setattr(exp.cache, "record", lambda name, key, compute: keys.append(key) or {"test_error": 0.0})
    p = exp.protocol
    exp.run(hinton_kd.arms(p)["teacher"], data, hinton_kd.measure(p))
    exp.run(hinton_kd.arms(p)["teacher"], data, hinton_kd.measure(dataclasses.replace(p, omitted_class=4)))
    assert keys[0]["measure"] == {"type": "OmittedClass", "omitted_class": p.omitted_class}
    assert keys[0]["measure"] != keys[1]["measure"] and keys[0]["arm"] == keys[1]["arm"]


def test_each_seeds_arms_train_and_are_measured_on_that_seeds_draw_and_its_teacher_too(monkeypatch, isolated):
    monkeypatch.delenv("KDREPRO_PROFILE", raising=False)
    exp = Experiment(hinton_kd, "smoke")
    whole = toy_data()
    data = dataclasses.replace(whole, train=whole.train.subset(torch.arange(8)), pool=whole.train)
    trained_on, measured_on = [], []
    monkeypatch.setattr("kdrepro.experiment.train_arm",
                        lambda arm, model, drawn, teacher: trained_on.append((arm.name, arm.seed, drawn.train.y)) or [])

    def measure(model, drawn):
        measured_on.append(drawn.train.y)
        return {"test_error": 0.0}

    for seed in (0, 1):
        exp.run(KD.at(seed), data, measure)
    draws = {seed: data.for_seed(seed).train.y for seed in (0, 1)}
    assert [(name, seed) for name, seed, _ in trained_on] == [("teacher", 0), ("kd", 0), ("teacher", 1), ("kd", 1)]
    assert all(torch.equal(y, draws[seed]) for _, seed, y in trained_on)
    assert all(torch.equal(y, draws[seed]) for seed, y in zip((0, 1), measured_on))
    assert not torch.equal(draws[0], draws[1])


def test_run_arms_trains_a_shared_teacher_once_and_records_it_beside_each_seeds_student(monkeypatch, isolated):
    monkeypatch.delenv("KDREPRO_PROFILE", raising=False)
    exp = Experiment(hinton_kd, "smoke")
    monkeypatch.setattr(exp, "protocol", dataclasses.replace(exp.protocol, seeds=(1, 2)))
    shared = dataclasses.replace(TEACHER, seed=7, shared=True)
    trained = []
    monkeypatch.setattr("kdrepro.experiment.train_arm",
                        lambda arm, model, drawn, teacher: trained.append((arm.name, arm.seed)) or [])
    exp.run_arms([shared, dataclasses.replace(KD, teacher=shared)], toy_data(), lambda model, drawn: {"x": 1.0})
    assert trained == [("teacher", 7), ("kd", 1), ("kd", 2)]
    assert sorted(zip(exp.runs["arm"], exp.runs["seed"])) == [("kd", 1), ("kd", 2), ("teacher", 1), ("teacher", 2),
                                                               ("teacher", 7)]


def test_at_moves_the_arm_it_starts_from_with_it():
    fine_tuned = dataclasses.replace(KD, start=dataclasses.replace(KD, name="checkpoint"))
    assert fine_tuned.at(3).start.seed == 3 and fine_tuned.at(3).start.teacher.seed == 3
    assert "starts from checkpoint's trained weights" in fine_tuned.describe()


def test_an_arm_that_starts_from_another_continues_a_copy_of_its_trained_model(monkeypatch, isolated):
    monkeypatch.delenv("KDREPRO_PROFILE", raising=False)
    exp, data = Experiment(hinton_kd, "smoke"), toy_data()
    checkpoint = Arm("checkpoint", Net({"family": "mlp", "hidden": [4]}), CrossEntropy(), RECIPE)
    fine_tuned = dataclasses.replace(KD, start=checkpoint)
    start = exp.train(checkpoint, data)
    kept = [p.detach().clone() for p in start.parameters()]
    model = exp.train(fine_tuned, data)
    # by hand: the checkpoint's weights, then the KD arm's own training with its teacher
    expected = Net({"family": "mlp", "hidden": [4]}).build(0, data)
    expected.load_state_dict(start.state_dict())
    train_arm(fine_tuned, expected, data, exp.train(TEACHER, data))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), expected.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(start.parameters(), kept))   # the checkpoint is not changed
    assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), kept))


# --- the code fingerprint -----------------------------------------------------------------------------------------

@pytest.fixture
def package_copy(tmp_path) -> Path:
    return Path(shutil.copytree(REPO_ROOT / "kdrepro", tmp_path / "kdrepro",
                                ignore=shutil.ignore_patterns("__pycache__")))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_rewording_a_departure_or_recolouring_a_figure_keeps_every_key(package_copy):
    before = package_fingerprint(package_copy)
    edit(package_copy / "experiments" / "hinton_kd.py", "DEPARTURES = \"\"\"", "DEPARTURES = \"\"\"\n- Reworded.")
    edit(package_copy / "experiments" / "hinton_kd.py", 'color="grey"', 'color="black"')
    edit(package_copy / "overview.py", "import", "import os  # an unused line\nimport")
    edit(package_copy / "claims.py", "MAX_SEEDS = 1000", "MAX_SEEDS = 2000")   # verdicts are judged at render
    edit(package_copy / "render.py", "MAX_SOCKET_PATH = 103", "MAX_SOCKET_PATH = 107")
    assert package_fingerprint(package_copy) == before


def test_changing_a_loss_function_changes_the_keys(package_copy):
    before = package_fingerprint(package_copy)
    edit(package_copy / "losses" / "response.py", "return kl * temperature**2", "return kl * temperature")
    assert package_fingerprint(package_copy) != before


# --- training an arm ----------------------------------------------------------------------------------------------

def test_fit_records_each_term_per_epoch_and_minimises_their_sum():
    data = toy_data()
    model = TEACHER.net.build(0, data)
    history = fit(model, CrossEntropy(), data.train, RECIPE, seed=0, progress_seconds=None)
    assert list(history.terms) == ["ce"] and len(history.terms["ce"]) == RECIPE.epochs
    assert history.terms["ce"] == pytest.approx(history.loss)


def test_a_distilled_arm_records_both_weighted_terms_and_their_sum_is_the_loss():
    data = toy_data()
    teacher = TEACHER.net.build(0, data)
    train_arm(TEACHER, teacher, data, None)
    student = KD.net.build(0, data)
    [history] = train_arm(KD, student, data, teacher)
    assert set(history.terms) == {"ce", "kd"}
    total = [ce + kd for ce, kd in zip(history.terms["ce"], history.terms["kd"])]
    assert total == pytest.approx(history.loss)


def test_the_same_init_name_gives_the_same_initial_weights_and_another_name_others():
    data = toy_data()
    a, b = Net({"family": "mlp", "hidden": [4]}).build(0, data), KD.net.build(0, data)
    other = Net({"family": "mlp", "hidden": [4]}, "other").build(0, data)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a[1].weight, other[1].weight)


def test_stages_run_in_order_each_from_the_weights_the_last_one_left():
    data = toy_data()
    staged = Arm("staged", KD.net, (Stage(CrossEntropy(), 1), Stage(CrossEntropy(), 1)), RECIPE)
    model = staged.net.build(0, data)
    histories = train_arm(staged, model, data, None)
    by_hand = staged.net.build(0, data)
    for _ in range(2):
        fit(by_hand, CrossEntropy(), data.train, dataclasses.replace(RECIPE, epochs=1),
            seed=derive(0, "stage", 0), progress_seconds=None)
    assert len(histories) == 2
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), by_hand.parameters()))


def test_every_stage_sees_the_batches_of_the_single_stage_arm_in_its_order(monkeypatch):
    """Pairing: a staged arm's stages (hints, then KD; FSP, then cross-entropy) train on the stream the scratch
    student at that seed trains on, so the stage that does the scratch student's work sees its batch order."""
    import kdrepro.arms

    seeds = []
    monkeypatch.setattr(kdrepro.arms, "fit", lambda *args, seed, **kwargs: seeds.append(seed))
    data = toy_data()
    own = Recipe(epochs=1, batch_size=8, lr=1e-3, optimizer="adam")
    scratch = Arm("student", KD.net, CrossEntropy(), RECIPE, seed=3)
    staged = Arm("staged", KD.net, (Stage(CrossEntropy(), 1, own), Stage(CrossEntropy(), 1)), RECIPE, seed=3)
    train_arm(scratch, scratch.net.build(3, data), data, None)
    train_arm(staged, staged.net.build(3, data), data, None)
    assert seeds == [derive(3, "stage", 0)] * 3


def test_a_stage_with_a_recipe_of_its_own_is_optimised_by_it_and_not_counted_in_the_arms_epochs():
    data = toy_data()
    own = Recipe(epochs=3, batch_size=8, lr=1e-3, optimizer="adam")
    staged = Arm("staged", KD.net, (Stage(CrossEntropy(), 3, own), Stage(CrossEntropy(), 2)), RECIPE)
    model = staged.net.build(0, data)
    train_arm(staged, model, data, None)
    by_hand = staged.net.build(0, data)
    for recipe in (own, RECIPE):
        fit(by_hand, CrossEntropy(), data.train, recipe, seed=derive(0, "stage", 0), progress_seconds=None)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), by_hand.parameters()))
    with pytest.raises(ValueError, match="its stages take 3 epochs of its recipe, more than the recipe's 2"):
        Arm("long", KD.net, (Stage(CrossEntropy(), 1, own), Stage(CrossEntropy(), 3)), RECIPE)


def test_a_validation_curve_is_recorded_after_every_epoch_of_the_stages_that_ask_and_changes_no_weight():
    data = toy_data()
    curve = dataclasses.replace(RECIPE, validation_curve=True)
    stages = (Stage(CrossEntropy(), 1, RECIPE), Stage(CrossEntropy(), 2))
    model = KD.net.build(0, data)
    first, second = train_arm(Arm("curved", KD.net, stages, curve), model, data, None)
    assert first.val_accuracy == [] and len(second.val_accuracy) == 2
    assert second.val_accuracy[-1] == evaluate(model, data.val)["accuracy"]
    plain = KD.net.build(0, data)
    train_arm(Arm("plain", KD.net, stages, RECIPE), plain, data, None)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), plain.parameters()))


def test_rows_leave_out_a_class_and_keep_the_steps_of_the_whole_split():
    labels = torch.arange(30) % 3
    rows = Rows(without_class=1).select(labels, seed=0)
    assert len(rows) == 20 and not (labels[rows] == 1).any()
    recipe = Recipe(epochs=40, batch_size=128)
    assert Rows().recipe(recipe, 5000, 5000).epochs == 40       # 40 batches an epoch
    assert Rows().recipe(recipe, 5000, 150).epochs == 800       # 2 batches an epoch: 1,600 steps
    assert Rows().recipe(recipe, 5000, 4500).epochs == 44       # 36 batches: 1,584 steps, the nearest
    assert Rows(same_steps=False).recipe(recipe, 5000, 150).epochs == 40


def test_a_distilling_objective_without_a_teacher_says_so():
    data = toy_data()
    orphan = dataclasses.replace(KD, teacher=None)
    with pytest.raises(ValueError, match="ResponseKD distils from a teacher, but the run has none"):
        train_arm(orphan, orphan.net.build(0, data), data, None)


def test_teacher_outputs_are_the_frozen_models_logits_for_the_batch_rows():
    data = toy_data()
    model = TEACHER.net.build(0, data)
    rows = torch.tensor([3, 5, 7])
    teacher = Teacher(model, data.train.x, rows)
    batch = Batch(data.train.x[rows][[2, 0]], data.train.y[rows][[2, 0]], torch.tensor([2, 0]))
    expected = model.eval()(data.train.x[[7, 3]])
    torch.testing.assert_close(teacher.outputs(batch), expected)
    torch.testing.assert_close(Teacher(model, data.train.x, rows, augmented=True).outputs(batch), expected)
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("paper", ["hinton_kd", "fitnets", "attention_transfer", "fsp", "rkd", "seqkd"])
def test_a_paper_with_one_teacher_trains_it_once_for_every_seeds_students(paper):
    module = experiments.module(paper)
    for protocol in module.PROFILES.values():
        arms = module.arms(protocol)
        teacher = arms["teacher"]
        assert teacher.shared and teacher.at(4) == teacher and teacher.seed == 0
        taught = [arm for arm in arms.values() if arm.teacher is not None and arm.teacher.name == "teacher"]
        assert taught and all(arm.at(4).seed == 4 and arm.at(4).teacher == teacher for arm in taught)
