"""The Seq-KD experiment end to end on a tiny two-file corpus: the `paper` profile's code path, offline."""

import json
from dataclasses import replace

import pandas as pd
import pytest
from tiny_profiles import use_paper_profile

from kdrepro.claims import Alike
from kdrepro.experiment import Experiment
from kdrepro.experiments import seqkd
from kdrepro.seq2seq import greedy, strip
from kdrepro.sequence_distillation import teacher_outputs
from kdrepro.translation import generate


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
    run = seqkd.SeqKD(exp, seqkd.load(exp.protocol))
    assert run.data.name == "wmt14_en_de" and len(run.data.train) == 48 and exp.protocol.inter_beam == 35
    for seed in exp.protocol.seeds:
        run.teacher_arm(seed)
        for arm in seqkd.ARMS:
            run.student_arm(arm, seed)
    runs = exp.runs
    assert set(runs.groupby("arm")["seed"].count()) == {2}
    arms = runs[runs["arm"].isin(["teacher", *seqkd.ARMS])]
    assert len(arms) == 12 and arms[["bleu_beam1", "bleu_beam5"]].stack().between(0, 100).all()
    assert (arms["tokens_per_s_beam5"] > 0).all() and "nrefs:1" in arms["bleu_signature"].iloc[0]
    assert len(list((isolated / "cache" / "runs").glob("seqkd-teacher-outputs-seed*.json"))) == 2
    table = seqkd.results_table(runs, exp.protocol)
    assert [row["arm"] for row in table] == ["teacher", *seqkd.ARMS]
    assert table[0]["paper greedy / beam 5 (WMT14 En-De)"] == "17.7 / 19.5"
    verdicts = exp.judge(seqkd.CLAIMS)
    folder = exp.save(table, verdicts, {"beam_sweep": seqkd.plot_beam_sweep(runs, exp.protocol)},
                      notes=seqkd.DEPARTURES)
    assert folder == isolated / "results" / "paper" / "seqkd"
    assert (folder / "figures" / "beam_sweep.png").stat().st_size > 1000
    assert len(json.loads((folder / "claims.json").read_text())) == len(seqkd.CLAIMS)
    assert len(pd.read_csv(folder / "runs.csv")) == len(runs)


def test_the_teachers_outputs_are_served_from_the_cache(tiny_paper_profile, isolated):
    exp = Experiment(seqkd, "paper")
    first = seqkd.SeqKD(exp, seqkd.load(exp.protocol)).outputs(0)
    models = sorted(p.name for p in (isolated / "cache" / "models").iterdir())
    again = seqkd.SeqKD(Experiment(seqkd, "paper"), seqkd.load(exp.protocol)).outputs(0)
    assert again == first and sorted(p.name for p in (isolated / "cache" / "models").iterdir()) == models
    assert len(first["seqkd"]) == len(first["seqinter"]) == 48


def test_with_a_beam_of_one_both_distilled_targets_are_the_greedy_translation(tiny_paper_profile, isolated):
    exp = Experiment(seqkd, "paper")
    run = seqkd.SeqKD(exp, seqkd.load(exp.protocol))
    teacher = run.teacher(0)
    outputs = teacher_outputs(teacher, run.data, beam=1, inter_beam=1, max_len=14)
    expected = [run.data.target_vocab.decode(ids) for ids in strip(greedy(teacher, run.train.x, 14))]
    assert outputs["seqkd"] == outputs["seqinter"] == expected


def test_every_claim_names_arms_the_notebook_runs():
    decoded = {f"{arm}/{decoding}" for arm in ["teacher", *seqkd.ARMS] for decoding in ("greedy", "beam5")}
    named = [(c.first, c.second) if isinstance(c, Alike) else (c.better, c.worse) for c in seqkd.CLAIMS]
    assert all(a in decoded and b in decoded for a, b in named)
    assert all(p.beam == 5 for p in seqkd.PROFILES.values())
