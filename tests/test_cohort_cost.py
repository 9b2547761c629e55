"""The cost of a cohort's training step: peers as separate forwards, and peers of one architecture vectorised."""

import torch

from kdrepro.cohort_cost import batched_peers, seconds_per_call, step_costs
from kdrepro.models import build

TINY_A = {"family": "resnet", "depth": 8, "channels": (4, 4, 8, 8)}


def test_vectorised_peers_compute_what_each_peer_computes():
    peers = [build(TINY_A, 10, 1) for _ in range(3)]
    x = torch.randn(8, 1, 12, 12)
    parameters, batched = batched_peers(peers)
    torch.testing.assert_close(batched(x), torch.stack([peer(x) for peer in peers]))
    assert parameters["fc.weight"].shape[0] == 3 and parameters["fc.weight"].requires_grad


def test_step_costs_reports_each_way_for_each_k():
    rows = step_costs(lambda: build(TINY_A, 10, 1), (1, 2), torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]),
                      repeats=1)
    assert [r["peers K"] for r in rows] == [1, 2]
    assert all(r[way].endswith(" ms") for r in rows
               for way in ("K separate models", "cohort, K forwards", "cohort, torch.func vmap"))


def test_seconds_per_call_warms_up_once_then_averages_the_repeats():
    calls = []
    assert seconds_per_call(lambda: calls.append(1), repeats=3) >= 0
    assert len(calls) == 4
