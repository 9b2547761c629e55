import pytest
import torch
from torch import nn

from kdrepro.cache import Cache


def build() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def counting_trainer(calls: list[int]):
    def train(model: nn.Module) -> None:
        calls.append(1)
        with torch.no_grad():
            model.weight.fill_(len(calls))
    return train


def test_a_trained_model_is_saved_once_and_reused(tmp_path):
    cache, calls = Cache(tmp_path), []
    first = cache.model("teacher", {"width": 3}, build, counting_trainer(calls))
    second = cache.model("teacher", {"width": 3}, build, counting_trainer(calls))
    assert len(calls) == 1
    torch.testing.assert_close(first.weight, second.weight)
    assert not second.training


def test_a_different_key_trains_a_different_model(tmp_path):
    cache, calls = Cache(tmp_path), []
    cache.model("teacher", {"seed": 0}, build, counting_trainer(calls))
    cache.model("teacher", {"seed": 1}, build, counting_trainer(calls))
    assert len(calls) == 2


def test_a_corrupt_model_file_is_retrained_not_crashed_on(tmp_path):
    cache, calls = Cache(tmp_path), []
    cache.model("teacher", {"k": 1}, build, counting_trainer(calls))
    (saved,) = (tmp_path / "models").glob("teacher-*.pt")
    saved.write_bytes(saved.read_bytes()[:50])
    with pytest.warns(UserWarning, match="unreadable"):
        model = cache.model("teacher", {"k": 1}, build, counting_trainer(calls))
    assert len(calls) == 2 and model.weight.eq(2).all()
    assert cache.model("teacher", {"k": 1}, build, counting_trainer(calls)).weight.eq(2).all()
    assert len(calls) == 2


def test_a_model_file_of_another_architecture_is_retrained(tmp_path):
    cache, calls = Cache(tmp_path), []
    cache.model("teacher", {"k": 1}, build, counting_trainer(calls))
    with pytest.warns(UserWarning, match="unreadable"):
        cache.model("teacher", {"k": 1}, lambda: nn.Linear(5, 2), counting_trainer(calls))
    assert len(calls) == 2


def test_results_are_recorded_once_and_corrupt_records_recomputed(tmp_path):
    cache, calls = Cache(tmp_path), []

    def compute():
        calls.append(1)
        return {"error": 0.25}

    assert cache.record("run", {"a": 1}, compute) == {"error": 0.25}
    assert cache.record("run", {"a": 1}, compute) == {"error": 0.25} and len(calls) == 1
    (saved,) = (tmp_path / "runs").glob("run-*.json")
    saved.write_text('{"error": 0.2')
    with pytest.warns(UserWarning):
        assert cache.record("run", {"a": 1}, compute) == {"error": 0.25}
    assert len(calls) == 2


def test_no_temporary_files_are_left_behind(tmp_path):
    cache = Cache(tmp_path)
    cache.model("teacher", {"k": 1}, build, counting_trainer([]))
    cache.record("run", {"a": 1}, lambda: {"x": 1})
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


def test_the_key_changes_with_computing_code_but_not_with_presentation_code(tmp_path, monkeypatch):
    from kdrepro import cache
    (tmp_path / "kdrepro").mkdir()
    (tmp_path / "kdrepro" / "train.py").write_text("lr = 0.1")
    (tmp_path / "kdrepro" / "report.py").write_text("title = 'a'")
    monkeypatch.setattr(cache, "REPO_ROOT", tmp_path)

    def digest() -> str:
        cache.code_fingerprint.cache_clear()
        return cache.key_digest({"seed": 0})

    first = digest()
    (tmp_path / "kdrepro" / "report.py").write_text("title = 'b'")
    assert digest() == first
    (tmp_path / "kdrepro" / "train.py").write_text("lr = 0.2")
    assert digest() != first
    cache.code_fingerprint.cache_clear()
