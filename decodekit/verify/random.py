"""Randomness for samplers, passed in so every result can be seeded and every test scripted.

Draws are keyed by the absolute position of the token they decide (and a stream number for
the several decisions one position may need), not taken from a running generator. So the
sampled text depends only on the seed: not on how many tokens a drafter proposed, nor on
timing-driven draft budgets. With a deterministic drafter, a seeded speculative run produces
exactly the tokens plain sampling produces with the same seed.
"""

from __future__ import annotations

import random
from typing import Protocol

import torch

from decodekit.errors import DecodekitError


class Randomness(Protocol):
    def uniform(self, position: int, stream: int = 0) -> float:
        """A draw from U[0, 1) for the token at `position` (the same call gives the same draw)."""


class SeededRandomness:
    """Counter-style draws: a fresh Mersenne Twister seeded with (seed, position, stream)."""

    def __init__(self, seed: int | None = None):
        if seed is not None and seed < 0:
            raise DecodekitError(f"seed must be an integer >= 0, got {seed}")
        self.seed = random.SystemRandom().randrange(2**32) if seed is None else seed

    def uniform(self, position: int, stream: int = 0) -> float:
        if not 0 <= stream < 256:  # 8 bits: a larger stream would reuse another position's draws
            raise ValueError(f"random stream {stream} outside [0, 256): a node has too many sampled children")
        return random.Random((self.seed << 72) | (position << 8) | stream).random()


def inverse_cdf(probs: torch.Tensor, u: float) -> int:
    """The token whose cumulative-probability interval contains u * total mass.

    >>> inverse_cdf(torch.tensor([0.2, 0.0, 0.5, 0.3]), 0.69)
    2
    """
    cumulative = probs.double().cumsum(-1)  # fp64: a 250k-token vocab accumulates rounding
    target = torch.tensor([u * float(cumulative[-1])], dtype=torch.float64, device=cumulative.device)
    index = int(torch.searchsorted(cumulative, target, right=True))
    index = min(index, probs.shape[-1] - 1)
    while probs[index] <= 0:  # u landed on a boundary next to zero-probability tokens
        index -= 1
    return index
