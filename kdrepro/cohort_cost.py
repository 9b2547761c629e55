"""What a step of a cohort costs: K peers trained together against K separate models, and peers of one
architecture batched into one forward with `torch.func` (Deep Mutual Learning's online scheme)."""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from kdrepro.losses.response import mutual_learning_losses


def batched_peers(peers: list[nn.Module]) -> tuple[dict[str, Tensor], Callable[[Tensor], Tensor]]:
    """One forward for K peers of one architecture: their weights stacked, the network vectorised over them
    with torch.func.vmap. Returns (stacked parameters to optimise, a function x -> (K, N, C) logits)."""
    parameters, buffers = stack_module_state(peers)
    skeleton = peers[0]

    def one(weights, state, x):
        return functional_call(skeleton, (weights, state), (x,))

    return parameters, lambda x: torch.vmap(one, in_dims=(0, 0, None))(parameters, buffers, x)


def step_costs(build_peer: Callable[[], nn.Module], ks: tuple[int, ...], x: Tensor, y: Tensor,
               repeats: int = 5) -> list[dict[str, object]]:
    """Milliseconds for one training step (forward, loss, backward) of K peers, three ways, for each K of `ks`."""
    rows = []
    for k in ks:
        peers = [build_peer() for _ in range(k)]
        parameters, batched = batched_peers([build_peer() for _ in range(k)])

        def separate():
            for peer in peers:
                F.cross_entropy(peer(x), y).backward()

        def cohort():
            mutual_learning_losses([peer(x) for peer in peers], y).sum().backward()

        def vectorised():
            mutual_learning_losses(list(batched(x)), y).sum().backward()

        rows.append({"peers K": k, **{name: f"{seconds_per_call(step, repeats) * 1000:.0f} ms" for name, step in (
            ("K separate models", separate), ("cohort, K forwards", cohort), ("cohort, torch.func vmap", vectorised))}})
    return rows


def seconds_per_call(step: Callable[[], None], repeats: int) -> float:
    """Mean seconds of `repeats` calls of `step`, after one call that warms up (first-call allocations)."""
    step()
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats
