"""The drafter protocol: every way of guessing tokens plugs into the loop through these three
methods, and never learns which verifier judges it."""

from __future__ import annotations

from typing import Protocol

import torch

from decodekit.budget import Budget
from decodekit.types import Draft, VerifyResult


class Drafter(Protocol):
    name: str

    def reset(self, prompt_ids: list[int]) -> None:
        """Start a new generation (drafters may keep what they learned across calls)."""

    def propose(self, history: list[int], budget: Budget) -> Draft:
        """Guess what follows `history` (prompt + committed tokens): at most
        `budget.max_tokens` nodes, sized with the forward costs in `budget.cost`."""

    def observe(self, draft: Draft, result: VerifyResult, target_logits: torch.Tensor) -> None:
        """Learn from a verification: what was accepted, and the model's logits
        [1 + len(draft), vocab] at every drafted position."""


class NoDrafter:
    """Plain autoregressive decoding: the loop with nothing to verify."""

    name = "ar"

    def reset(self, prompt_ids: list[int]) -> None:
        pass

    def propose(self, history: list[int], budget: Budget) -> Draft:
        return Draft.empty()

    def observe(self, draft: Draft, result: VerifyResult, target_logits: torch.Tensor) -> None:
        pass
