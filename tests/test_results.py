import json

import pandas as pd
import pytest

from kdrepro.tables import runs_by_arm
from kdrepro.results import atomic_write_text, markdown_table, provenance, publish_directory


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "table.csv"
    atomic_write_text(target, "old")

    def broken_replace(*args):
        raise KeyboardInterrupt  # as if the run were interrupted at the last moment

    monkeypatch.setattr("kdrepro.results.os.replace", broken_replace)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_publish_directory_swaps_the_whole_folder(tmp_path):
    target = tmp_path / "cpu" / "hinton_kd"
    publish_directory(target, lambda folder: (folder / "a.txt").write_text("1"))
    publish_directory(target, lambda folder: (folder / "b.txt").write_text("2"))
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["hinton_kd"]


def test_an_interrupted_publish_keeps_the_previous_results_whole(tmp_path):
    target = tmp_path / "hinton_kd"
    publish_directory(target, lambda folder: (folder / "table.csv").write_text("complete"))

    def interrupted(folder):
        (folder / "table.csv").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        publish_directory(target, interrupted)
    assert (target / "table.csv").read_text() == "complete"
    publish_directory(target, lambda folder: (folder / "table.csv").write_text("next"))
    assert (target / "table.csv").read_text() == "next"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hinton_kd"]  # the stale staging folder is gone


def test_markdown_table_renders_rows_and_escapes_pipes():
    text = markdown_table([{"arm": "kd", "error": "1.0 | 2.0"}, {"arm": "student", "error": 3}])
    assert text.splitlines() == ["| arm | error |", "|---|---|", "| kd | 1.0 \\| 2.0 |", "| student | 3 |"]


def test_provenance_records_how_a_result_was_made():
    record = provenance("cpu", [0, 1, 2], 12.34)
    assert record["profile"] == "cpu" and record["seeds"] == [0, 1, 2] and record["wall_seconds"] == 12.3
    assert record["versions"]["torch"].startswith("2.14.1")
    assert record["device"].startswith("cpu") and record["torch_threads"] >= 1
    assert isinstance(record["git_dirty"], bool)
    json.dumps(record)


def test_runs_by_arm_keeps_the_asked_order_and_leaves_out_arms_without_runs():
    runs = pd.DataFrame({"arm": ["kd", "student", "kd"], "seed": [0, 0, 1]})
    grouped = [(arm, rows["seed"].tolist()) for arm, rows in runs_by_arm(runs, ["student", "teacher", "kd"])]
    assert grouped == [("student", [0]), ("kd", [0, 1])]
