"""Tiny draft/target pairs: a target from tests/tiny.py and a draft that is a noisy copy of it.

The copy agrees with the target on most greedy tokens (so drafts get accepted) without being the
target (so rejections, residuals and the catch-up step all happen)."""

from __future__ import annotations

import copy
import functools

import torch
from tiny import byte_tokenizer, tiny_model

from decodekit.models.hf import HFBackend

NOISE = 0.05  # relative, per weight


@functools.cache
def noisy_copy(arch: str, noise: float = NOISE, seed: int = 1) -> torch.nn.Module:
    model = copy.deepcopy(tiny_model(arch))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1 + noise * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def tiny_draft_backend(arch: str, noise: float = NOISE) -> HFBackend:
    return HFBackend(model=noisy_copy(arch, noise), tokenizer=byte_tokenizer(), name=f"tiny-{arch}-draft")
