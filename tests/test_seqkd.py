"""The Seq-KD experiment end to end on a tiny two-file corpus: the `paper` profile's code path, offline."""

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch
from tiny_profiles import use_paper_profile

from kdrepro.arms import Rows, train_arm
from kdrepro.claims import Alike
from kdrepro.experiment import Experiment
from kdrepro.experiments import seqkd
from kdrepro.schemes import Teacher
from kdrepro.seeds import derive
from kdrepro.train import fit
from kdrepro.translation import generate

STUDENTS = ("baseline", "word_kd", "seq_kd", "seq_inter", "seq_all")


@pytest.fixture
def tiny_paper_profile(monkeypatch, data_dir, isolated):
    """A WMT-like folder (train/dev/test, .en and .de, one sentence a line) written from the generated task."""
    corpus = generate(seed=3, train_size=48, val_size=6, test_size=10, references=1)
    folder = data_dir / "wmt14_en_de"
    folder.mkdir()
    for split, part in (("train", corpus.train), ("dev", corpus.val), ("test", corpus.test)):
        for language, sentences in (("en", part.sources), ("de", part.targets)):
            (folder / f"{split}.{language}").write_text("".join(" ".join(s) + "\n" for s in sentences))
    paper = seqkd.PROFILES["paper"]
    tiny = replace(paper, seeds=(0, 1), teacher=(2, 16), student=(1, 8), teacher_embedding=8, student_embedding=8,
                   recipe=replace(paper.recipe, epochs=2, batch_size=32), sweep_beams=(1, 5), max_len=14)
    return use_paper_profile(monkeypatch, seqkd, tiny)


def test_paper_profile_runs_every_arm_and_publishes_results(tiny_paper_profile, isolated):
    exp = Experiment(seqkd, "paper")
    data = seqkd.load(exp.protocol)
    assert data.name == "wmt14_en_de" and len(data.train) == 48 and exp.protocol.inter_beam == 35
    seqkd.run_arms(exp, list(seqkd.arms(exp.protocol).values()), data)
    runs = exp.runs
    assert set(runs.groupby("arm")["seed"].count()) == {2}  # the one teacher recorded beside each seed's students
    arms = runs[runs["arm"].isin(["teacher", *STUDENTS])]
    assert len(arms) == 12 and arms[arms["arm"] == "teacher"]["bleu_beam1"].nunique() == 1 and arms[["bleu_beam1", "bleu_beam5", "val_bleu_beam1"]].stack().between(0, 100).all()
    assert (arms["tokens_per_s_beam5"] > 0).all() and "nrefs:1" in arms["bleu_signature"].iloc[0]
    greedy = runs[runs["arm"] == "seq_kd/greedy"].set_index("seed")["bleu"]
    assert greedy.to_dict() == arms[arms["arm"] == "seq_kd"].set_index("seed")["bleu_beam1"].to_dict()
    teacher = arms[arms["arm"] == "teacher"].iloc[0]
    assert runs[runs["arm"] == "teacher/beam5"].set_index("seed")["val_bleu"].to_dict() == {
        0: teacher["val_bleu_beam5"], 1: teacher["val_bleu_beam5"]}
    # the one teacher's Seq-KD and Seq-Inter translations, each made once and shared by every seed's students
    assert len(list((isolated / "cache" / "runs").glob("teacher-translations-*.json"))) == 2
    table = seqkd.results_table(runs, exp.protocol)
    assert [row["arm"] for row in table] == ["teacher", *STUDENTS]
    assert table[0]["paper greedy / beam 5 (WMT14 En-De)"] == "17.7 / 19.5"
    verdicts = exp.judge(seqkd.CLAIMS)
    folder = exp.save(table, verdicts, {"beam_sweep": seqkd.plot_beam_sweep(runs, exp.protocol)},
                      notes=seqkd.DEPARTURES)
    assert folder == isolated / "results" / "paper" / "seqkd"
    assert (folder / "figures" / "beam_sweep.png").stat().st_size > 1000
    assert len(json.loads((folder / "claims.json").read_text())) == len(seqkd.CLAIMS)
    assert len(pd.read_csv(folder / "runs.csv")) == len(runs)


def test_the_teachers_translations_are_served_from_the_cache(tiny_paper_profile, isolated):
    exp = Experiment(seqkd, "paper")
    data, arms = seqkd.load(exp.protocol), seqkd.arms(exp.protocol)
    first = arms["seq_kd"].rows.translations(exp.train(arms["teacher"], data), data)
    models = sorted(p.name for p in (isolated / "cache" / "models").iterdir())
    again = Experiment(seqkd, "paper")
    assert arms["seq_kd"].rows.translations(again.train(arms["teacher"], data), data) == first
    assert sorted(p.name for p in (isolated / "cache" / "models").iterdir()) == models and len(first) == 48


def test_all_three_trains_on_the_seq_kd_targets_then_with_word_kd_on_the_seq_inter_targets(tiny_paper_profile):
    p = seqkd.PROFILES["paper"]
    data, arms = seqkd.load(p), seqkd.arms(p)
    teacher = arms["teacher"].net.build(0, data)
    train_arm(arms["teacher"], teacher, data, None)
    seq_all = arms["seq_all"]
    model = seq_all.net.build(0, data)
    histories = train_arm(seq_all, model, data, teacher)
    assert [list(h.terms) for h in histories] == [["nll"], ["nll", "word_kd"]]
    by_hand = seq_all.net.build(0, data)
    for stage, view in zip(seq_all.stages, (arms["seq_kd"].rows, arms["seq_inter"].rows)):
        split, _ = view.split(data, teacher, 0)   # every stage on the arm's own stream (arms.train_arm)
        fit(by_hand, stage.objective, split, replace(p.recipe, epochs=stage.epochs), seed=derive(0, "stage", 0),
            teacher=Teacher(teacher, data.train.x), progress_seconds=None)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), by_hand.parameters()))


def test_students_are_paired_and_every_seed_learns_from_one_teacher():
    p = seqkd.PROFILES["cpu"]
    arms = seqkd.arms(p)
    students = [arms[name] for name in STUDENTS]
    assert {arm.net for arm in students} == {arms["baseline"].net} and arms["teacher"].net.init != "student"
    assert {arm.recipe.epochs for arm in students} == {p.recipe.epochs}
    assert sum(stage.epochs for stage in arms["seq_all"].stages) == p.recipe.epochs
    assert arms["baseline"].teacher is None and arms["baseline"].rows == Rows()
    assert {arm.teacher for arm in students[1:]} == {arms["teacher"]}
    assert arms["seq_kd"].at(2).teacher == arms["teacher"] and arms["teacher"].seed == p.teacher_seed
    runs = seqkd.runs(replace(p, seeds=(0, 1)))
    assert [run.arm.name for run in runs] == ["teacher", *p.students, *p.students] and "seq_all" not in p.students


def test_decodings_give_each_run_a_row_per_decoding_with_its_test_and_validation_bleu():
    runs = pd.DataFrame([{"arm": "teacher", "seed": 3, "bleu_beam1": 50.0, "bleu_beam5": 52.0,
                          "val_bleu_beam1": 40.0, "val_bleu_beam5": 41.0},
                         {"arm": "seq_kd", "seed": 4, "bleu_beam1": 30.0, "bleu_beam5": 31.0,
                          "val_bleu_beam1": 20.0, "val_bleu_beam5": 21.0},
                         {"arm": "seq_kd/greedy", "seed": 4, "bleu": 30.0, "val_bleu": 20.0}])
    rows = seqkd.decodings(runs, seqkd.PROFILES["smoke"]).set_index(["arm", "seed"])
    assert rows.to_dict("index") == {("teacher/greedy", 3): {"bleu": 50.0, "val_bleu": 40.0},
                                     ("teacher/beam5", 3): {"bleu": 52.0, "val_bleu": 41.0},
                                     ("seq_kd/greedy", 4): {"bleu": 30.0, "val_bleu": 20.0},
                                     ("seq_kd/beam5", 4): {"bleu": 31.0, "val_bleu": 21.0}}


def test_a_one_epoch_budget_gives_each_stage_of_all_three_that_epoch():
    arms = seqkd.arms(seqkd.PROFILES["smoke"])
    assert [stage.epochs for stage in arms["seq_all"].stages] == [1, 1] and arms["seq_all"].recipe.epochs == 2


def test_every_claim_names_arms_the_notebook_runs():
    arms = seqkd.arms(seqkd.PROFILES["cpu"])
    assert list(arms) == ["teacher", *STUDENTS] and set(seqkd.arm_descriptions(seqkd.PROFILES["cpu"])) == set(arms)
    decoded = {f"{arm}/{decoding}" for arm in arms for decoding in ("greedy", "beam5")}
    named = [(c.first, c.second) if isinstance(c, Alike) else (c.better, c.worse) for c in seqkd.CLAIMS]
    assert all(a in decoded and b in decoded for a, b in named)
    assert all(p.beam == 5 for p in seqkd.PROFILES.values())
