"""The drafter protocol: every way of guessing tokens plugs into the loop through these three
methods, and never learns which verifier judges it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from decodekit.budget import Budget
from decodekit.sampling import SamplingConfig
from decodekit.types import Draft, VerifyResult
from decodekit.verify.random import Randomness

if TYPE_CHECKING:
    from decodekit.backend import Backend


class Drafter(Protocol):
    name: str

    def reset(self, prompt_ids: list[int], sampling: SamplingConfig, rng: Randomness) -> None:
        """Start a new generation (drafters may keep what they learned across calls).

        `sampling` is the call's sampling settings: a drafter that samples its tokens draws
        them from its own distribution under these same settings, the distribution the
        verifier assumes it drew from (Draft.draft_probs). `rng` is the call's seeded
        randomness, for drafters that want reproducible drafts."""

    def propose(self, history: list[int], budget: Budget) -> Draft:
        """Guess what follows `history` (prompt + committed tokens): at most
        `budget.max_tokens` nodes, sized with the forward costs in `budget.cost`."""

    def observe(self, draft: Draft, result: VerifyResult, target_logits: torch.Tensor) -> None:
        """Learn from a verification: what was accepted, and the model's logits
        [1 + len(draft), vocab] at every drafted position."""


@runtime_checkable
class NeedsTarget(Protocol):
    """A drafter that works with the target model itself (a draft model must share its
    tokenizer; self-speculation runs a part of it). Decoder calls `attach` once the target is
    loaded, before any generation: bad pairings fail there, with a clear message."""

    def attach(self, target: Backend) -> None: ...


def attach_target(drafter: Drafter, target: Backend) -> None:
    if isinstance(drafter, NeedsTarget):
        drafter.attach(target)


class NoDrafter:
    """Plain autoregressive decoding: the loop with nothing to verify."""

    name = "ar"

    def reset(self, prompt_ids: list[int], sampling: object = None, rng: object = None) -> None:
        pass

    def propose(self, history: list[int], budget: Budget) -> Draft:
        return Draft.empty()

    def observe(self, draft: Draft, result: VerifyResult, target_logits: torch.Tensor) -> None:
        pass
