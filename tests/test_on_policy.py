"""On-policy distillation (notebook 09) end to end on a tiny two-file corpus: the `paper` profile's code path; the
arms it shares with notebook 08, and its cost-matched pair."""

import json
from dataclasses import replace

import pandas as pd
import pytest
from tiny_profiles import use_paper_profile, write_corpus

from kdrepro.experiment import Experiment
from kdrepro.experiments import on_policy, seqkd
from kdrepro.objectives.sequence import OnPolicyKD

STUDENTS = ("baseline", *on_policy.METHODS, *on_policy.COST_MATCHED)


@pytest.fixture
def tiny_paper_profile(monkeypatch, data_dir, isolated):
    """08's and 09's `paper` profiles shrunk to a tiny WMT-like corpus and two seeds: 08's students two epochs, the
    last of them after the checkpoint in 09."""
    write_corpus(data_dir / "wmt14_en_de")
    paper = seqkd.PROFILES["paper"]
    use_paper_profile(monkeypatch, seqkd, replace(
        paper, seeds=(0, 1), teacher=(1, 16), student=(1, 8), teacher_embedding=8, student_embedding=8,
        recipe=replace(paper.recipe, epochs=2, batch_size=32), sweep_beams=(1, 5), max_len=14))
    return use_paper_profile(monkeypatch, on_policy, replace(on_policy.PROFILES["paper"], seeds=(0, 1), epochs=1))


def test_paper_profile_runs_every_arm_and_publishes_results(tiny_paper_profile, isolated):
    exp = Experiment(on_policy, "paper")
    p, data = exp.protocol, on_policy.load(exp.protocol)
    arms = on_policy.arms(p)
    assert data.name == "wmt14_en_de" and len(data.train) == 48
    on_policy.run_teacher(exp, arms["teacher"], data)
    exp.run_arms([arms[name] for name in STUDENTS], data, on_policy.measure(p))
    runs = exp.runs
    assert runs.groupby("arm")["seed"].count().to_dict() == {name: 2 for name in ("teacher", *STUDENTS)}
    assert runs[["bleu_beam1", "bleu_beam5", "val_bleu_beam1"]].stack().between(0, 100).all()
    assert "bleu_drop_beam1" in runs and "bleu_beam1_len1-15" in runs
    assert len(list((isolated / "cache" / "models").glob("*"))) > 0
    table = on_policy.results_table(runs, p)
    assert [row["arm"] for row in table] == ["teacher", *STUDENTS]
    verdicts = exp.judge(on_policy.CLAIMS)
    figures = {"bleu_by_length": on_policy.plot_bleu_by_length(runs, p),
               "cost_matched": on_policy.plot_cost_matched(runs, p, on_policy.steps_per_epoch(p, data))}
    folder = exp.save(table, verdicts, figures, notes=on_policy.DEPARTURES,
                      extra_tables={"by length": on_policy.length_table(runs, p)})
    assert folder == isolated / "results" / "paper" / "on_policy"
    assert all((folder / "figures" / f"{name}.png").stat().st_size > 1000 for name in figures)
    assert len(json.loads((folder / "claims.json").read_text())) == len(on_policy.CLAIMS)
    assert len(pd.read_csv(folder / "runs.csv")) == len(runs) and (folder / "table2.csv").exists()


def test_the_students_09_shares_with_08_are_read_from_08s_training_not_trained_again(tiny_paper_profile, isolated):
    p = on_policy.PROFILES["paper"]
    data = on_policy.load(p)
    ours, theirs = on_policy.arms(p), seqkd.arms(on_policy.base(p))
    trained_by_08 = Experiment(seqkd, "paper").train(theirs["baseline"], data)
    models = sorted((isolated / "cache" / "models").iterdir())
    exp = Experiment(on_policy, "paper")
    read_by_09 = exp.train(ours["baseline"], data)
    assert sorted((isolated / "cache" / "models").iterdir()) == models
    assert all(a.equal(b) for a, b in zip(read_by_09.state_dict().values(), trained_by_08.state_dict().values()))
    assert len(exp.histories(ours["baseline"], data)[0].loss) == 2   # 08's training history: its two epochs


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_every_student_makes_08s_updates_and_the_late_arms_share_one_seq_kd_checkpoint(profile):
    p = on_policy.PROFILES[profile]
    ours, theirs = on_policy.arms(p), seqkd.arms(on_policy.base(p))
    assert all(ours[name].key() == theirs[name].key() for name in ("teacher", "baseline", "word_kd", "seq_kd"))
    assert ours["teacher"].shared
    checkpoint = ours["checkpoint"]
    assert checkpoint.key() == replace(theirs["seq_kd"], recipe=checkpoint.recipe).key()
    late = [ours[name] for name in ("on_policy_fkl", "on_policy_rkl", "on_policy_jsd", "mixed", "seq_kd_more")]
    assert all(arm.start == checkpoint and arm.recipe.epochs == p.epochs for arm in late)
    total = on_policy.base(p).recipe.epochs
    assert checkpoint.recipe.epochs + p.epochs == total == ours["baseline"].recipe.epochs
    students = [ours[name] for name in STUDENTS]
    assert {arm.net for arm in students} == {ours["baseline"].net}
    assert {arm.teacher for arm in students[1:]} == {ours["teacher"]}
    assert [type(arm.objective) for arm in late[:4]] == [OnPolicyKD] * 4
    assert ours["seq_kd_more"].rows == ours["seq_kd"].rows


def test_on_policy_epochs_that_leave_the_checkpoint_nothing_are_refused_by_name():
    p = replace(on_policy.PROFILES["cpu"], epochs=on_policy.base(on_policy.PROFILES["cpu"]).recipe.epochs)
    with pytest.raises(ValueError, match=r"Protocol\(epochs=15\).*fewer than 08's 15"):
        on_policy.arms(p)


def test_every_claim_names_arms_the_notebook_runs_with_a_metric_it_measures():
    arms = on_policy.arms(on_policy.PROFILES["cpu"])
    assert set(on_policy.arm_descriptions(on_policy.PROFILES["cpu"])) == set(arms)
    assert all(c.better in arms and c.worse in arms for c in on_policy.CLAIMS)
    assert {c.metric for c in on_policy.CLAIMS} <= {"bleu_beam1", "bleu_drop_beam1"}
    assert on_policy.CLAIMS[0].better == on_policy.ON_POLICY and arms[on_policy.ON_POLICY].objective.beta == 1.0
