"""One seed rule for every random stream: `derive(seed, *names)`.

A run's seed never feeds a generator directly. Each stream (a network's initial weights, the batch order, the
augmentation, the dropout masks, a data draw, a permutation) gets its own number derived from the seed and the
stream's names, so streams never collide and two arms that name the same stream at the same seed get the same
numbers: that is how arms are paired (the scratch and the distilled student start from the same weights and see
the same batches).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Iterator

import torch


def derive(seed: int, *names: str | int) -> int:
    """A 63-bit seed for the stream `names` of run `seed`: sha256 of both, so nearby seeds give unrelated streams."""
    text = "/".join([str(int(seed)), *map(str, names)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def generator(seed: int, *names: str | int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator for the stream `names` of run `seed`."""
    return torch.Generator(device=device).manual_seed(derive(seed, *names))


@contextmanager
def seeded(seed: int, *names: str | int) -> Iterator[None]:
    """Code that draws from torch's global generator (a module's initialisation, dropout) draws from the stream
    `names` of run `seed` inside this block; the global state outside it is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive(seed, *names))
        yield
