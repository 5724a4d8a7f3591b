"""Structured output in the decode loop: the constraint part (constraint.py: drafts trimmed to
their grammar-valid prefix, logits masked per draft node, the grammar state advanced only on
committed tokens), token healing (healing.py) and grammar-aligned sampling (aligned.py). The
grammars themselves are settings (decodekit/grammar.py); `sample_constrained` is in
decodekit/constrained_sampling.py, beside the API it drives."""

from __future__ import annotations

from typing import Protocol

import torch

from decodekit.types import Draft


class Constraint(Protocol):
    """What the decode loop asks of a constraint (constraint.py implements it)."""

    def trim(self, draft: Draft) -> tuple[Draft, torch.Tensor | None]:
        """The draft cut to what the constraint allows, and the allowed tokens per logits row
        ([1 + len(trimmed), vocab] bool), or None when every token is allowed."""
        ...

    def apply(self, logits: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        """The logits verification reads: refused tokens at -inf."""
        ...

    def commit(self, tokens: list[int]) -> list[int]:
        """Advance over committed tokens; return the tokens now forced (already consumed)."""
        ...

    @property
    def completed(self) -> bool | None:
        """Whether the committed text completes the grammar (None: no grammar of the user's)."""
        ...
