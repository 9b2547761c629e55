"""Augmentation on batched tensors, seeded by an explicit generator."""

import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop(x: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Zero-pad by `padding` pixels and crop back at a random offset per image: a random translation of up to
    `padding` pixels in each direction (Hinton et al.'s "jitter", the CIFAR "pad 4 and crop")."""
    if padding == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator).to(x.device)
    out = torch.empty_like(x)
    # one slice per distinct offset: (2p+1)^2 vectorised copies instead of n Python-level ones
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            rows = ((offsets[:, 0] == dy) & (offsets[:, 1] == dx)).nonzero(as_tuple=True)[0]
            if len(rows):
                out[rows] = padded[rows, :, dy: dy + h, dx: dx + w]
    return out


def random_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)
