"""Bad values handed to the API and bad entries in the cache: each stops with an error that names the value or the
file, or is detected and recomputed, never passed on in silence."""

import json
import math
from datetime import datetime, timezone

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdrepro.cache import Cache
from kdrepro.data import Split
from kdrepro.experiments import seqkd
from kdrepro.metric_learning import triplet_loss
from kdrepro.models import mlp
from kdrepro.objectives.relation import FSP
from kdrepro.results import device_description, measured_on
from kdrepro.objectives import Objective
from kdrepro.train import NonFiniteLossError, NonFiniteWeightsError, Recipe, evaluate, fit


def toy_split(n: int = 64) -> Split:
    x = torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    return Split(x, (x.mean(dim=(1, 2, 3)) > 0).long())


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    return mlp((1, 4, 4), (16,), 2)


# --- the training loop ------------------------------------------------------------------------------------------

class GradientExplodesAtStep(Objective):
    """Cross-entropy, plus at one step sqrt(f - f) for f the sum of the logits: a term worth 0, so the loss stays
    finite, whose gradient 1 / (2 sqrt(0)) is infinite."""

    def __init__(self, step: int):
        self.step, self.calls = step, 0

    def terms(self, model, batch, context):
        self.calls += 1
        logits = model(batch.x)
        loss = F.cross_entropy(logits, batch.y)
        if self.calls == self.step:
            loss = loss + (logits.sum() - logits.sum().detach()).sqrt()
        return {"ce": loss}


def test_a_non_finite_gradient_on_the_last_step_stops_the_run_instead_of_returning_nan_weights():
    model = toy_model()
    with pytest.raises(NonFiniteWeightsError, match=r"toy: the weights are not finite after epoch 1 \('.+' first\), "
                                                    "though every loss was.*Lower the learning rate"):
        fit(model, GradientExplodesAtStep(step=4), toy_split(64), Recipe(epochs=1, batch_size=16), seed=0,
            name="toy", progress_seconds=None)  # 4 steps: the gradient explodes on the last


def test_a_nan_loss_after_the_weights_went_non_finite_does_not_claim_the_weights_were_spared():
    with pytest.raises(NonFiniteWeightsError, match="loss is nan at epoch 1, step 3, because an earlier step of this "
                                                    "epoch made the weights non-finite") as error:
        fit(toy_model(), GradientExplodesAtStep(step=2), toy_split(64), Recipe(epochs=1, batch_size=16), seed=0,
            progress_seconds=None)
    assert "stopped before updating" not in str(error.value)
    assert isinstance(error.value, NonFiniteLossError)  # whoever caught the loss's error still catches this one


def test_a_model_with_nan_weights_is_not_scored():
    model = toy_model()
    with torch.no_grad():
        next(model.parameters()).fill_(math.nan)
    with pytest.raises(ValueError, match="logits hold NaN or infinite values, so its accuracy is undefined"):
        evaluate(model, toy_split(8))


@pytest.mark.parametrize("changes, message", [
    ({"gamma": -0.1}, "gamma=-0.1 must be positive and finite"),
    ({"weight_decay": math.nan}, "weight_decay=nan must be non-negative and finite"),
    ({"epochs": 2.5}, "epochs=2.5 must be a whole number"),
    ({"batch_size": 32.5}, "batch_size=32.5 must be a whole number"),
    ({"schedule": "step", "milestones": (3, 3)}, r"milestones=\(3, 3\) must be increasing, each epoch once"),
    ({"schedule": "step", "milestones": (6, 3)}, r"milestones=\(6, 3\) must be increasing"),
    ({"lr": 1e39}, "lr=1e[+]39 must be positive and at most float32's largest value, 3.4e[+]38"),
    ({"lr": math.inf}, "lr=inf must be positive"),
])
def test_recipe_values_that_cannot_train_are_refused_by_name(changes, message):
    with pytest.raises(ValueError, match=f"impossible recipe: {message}"):
        Recipe(**{"epochs": 10, **changes})


# --- values of the losses' objectives -----------------------------------------------------------------------------

@pytest.mark.parametrize("margin", [math.nan, math.inf, 0.0])
def test_a_triplet_margin_that_is_not_positive_and_finite_is_refused(margin):
    with pytest.raises(ValueError, match=f"the triplet margin must be positive and finite, got {margin}"):
        triplet_loss(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), margin)


@pytest.mark.parametrize("weight", [math.nan, math.inf])
def test_an_fsp_weight_that_is_not_finite_is_refused_when_the_objective_is_made(weight):
    with pytest.raises(ValueError, match=r"FSP needs one non-negative weight per layer pair, each finite"):
        FSP((("a", "b"), ("b", "c")), weights=(1.0, weight))


# --- the cache ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content", ["{}", "null", "[1, 2]", '"text"'])
def test_a_cached_record_that_is_not_a_non_empty_mapping_is_named_and_recomputed(tmp_path, content):
    cache, calls = Cache(tmp_path), []

    def compute():
        calls.append(1)
        return {"error": 0.25}

    cache.record("run", {"a": 1}, compute)
    (saved,) = (tmp_path / "runs").glob("run-*.json")
    saved.write_text(content)
    with pytest.warns(UserWarning, match=f"cached result {saved} cannot be used .*not a non-empty mapping"):
        assert cache.record("run", {"a": 1}, compute) == {"error": 0.25}
    assert len(calls) == 2 and json.loads(saved.read_text()) == {"error": 0.25}


def test_a_cached_model_with_non_finite_weights_is_named_and_retrained(tmp_path):
    cache, trained = Cache(tmp_path), []

    def train(model):
        trained.append(1)
        with torch.no_grad():
            model.weight.fill_(2.0)

    cache.model("teacher", {"k": 1}, lambda: nn.Linear(3, 2), train)
    (saved,) = (tmp_path / "models").glob("teacher-*.pt")
    torch.save({"weight": torch.full((2, 3), math.nan), "bias": torch.zeros(2)}, saved)
    with pytest.warns(UserWarning, match=f"cached model {saved} is not usable: its weights hold NaN or infinite "
                                         "values \\('weight' first\\); retraining"):
        model = cache.model("teacher", {"k": 1}, lambda: nn.Linear(3, 2), train)
    assert len(trained) == 2 and model.weight.eq(2.0).all()


def test_a_fresh_record_is_what_a_later_run_reads_from_the_cache(tmp_path):
    # the runs table's columns follow the records' keys: they must come in one order, cached or not
    cache = Cache(tmp_path)
    fresh = cache.record("run", {"a": 1}, lambda: {"zeta": 1, "alpha": (2, 3)})
    cached = cache.record("run", {"a": 1}, lambda: pytest.fail("a cached record was recomputed"))
    assert list(fresh.items()) == list(cached.items()) == [("alpha", [2, 3]), ("zeta", 1)]
    assert list(pd.DataFrame([fresh]).columns) == list(pd.DataFrame([cached]).columns)


# --- figures that depend on the machine ------------------------------------------------------------------------

def test_a_decoding_speed_is_shown_with_the_machine_and_date_it_was_measured_on():
    assert measured_on() == f"{device_description()}, {datetime.now(timezone.utc):%Y-%m-%d}"
    speeds = {f"tokens_per_s_beam{b}": [1000.0, 3000.0] for b in (1, 5)}
    runs = pd.DataFrame({"arm": ["teacher"] * 2, "seed": [0, 1], "parameters": [10, 10], "bleu_beam1": [1.0, 2.0],
                         "bleu_beam5": [1.0, 2.0], **speeds,
                         "speed_measured_on": ["cuda: an older GPU, 2026-01-02"] * 2})
    (row,) = seqkd.results_table(runs, seqkd.PROFILES["smoke"])
    assert row["tokens/s greedy"] == "2,000" and row["speeds measured on"] == "cuda: an older GPU, 2026-01-02"
