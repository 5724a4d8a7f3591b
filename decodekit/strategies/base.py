"""The distribution stage of the one loop: what a decoding strategy changes about the model's
next-token distribution, and nothing else.

    forward ─► constraint mask ─► strategy.reshape ─► verify ─► commit

A strategy maps the target's logits for every row of a step (row 0 after the last pending
token, row 1 + i after draft node i) to the logits the method decodes from. Verification,
greedy or sampled, then works on the reshaped rows, so a drafter stays exactly as lossless as
before — with respect to the reshaped distribution: contrastive decoding or DoLa with prompt
lookup give the very tokens they give without it, in fewer steps.

That holds when row r's reshaped logits depend only on the text up to row r: the committed
history and the draft path to that node. Strategies that need more than the final logits get it
in `forward` (hidden states of lower layers, a second model's or a second prompt's logits for
the same nodes, kept in step through `commit`); strategies with state along the text (mirostat's
μ) carry it down each draft path and advance it on the committed tokens only.

The grammar mask comes before the reshape (DESIGN.md draws it after): a strategy that truncates
(contrastive decoding's plausibility set, mirostat's surprise cut) then truncates among the
tokens the grammar allows, and can never leave a row with nothing to pick.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from decodekit.sampling import SamplingConfig
from decodekit.tree import ROOT
from decodekit.types import Draft, VerifyResult

if TYPE_CHECKING:
    from decodekit.backend import Backend, KVCache


class Strategy:
    """The plain model: logits pass through unchanged. Subclasses override what they need."""

    name = "plain"

    def attach(self, backend: Backend) -> None:
        """Check that the strategy fits this model and load what it needs (an amateur model
        on the same kind of backend). Errors here are the user's: name the option."""

    def check_sampling(self, sampling: SamplingConfig) -> None:
        """Refuse sampling settings the strategy cannot run under (before any model loads)."""

    def start(self, prompt_ids: list[int], sampling: SamplingConfig) -> None:
        """A fresh generation from `prompt_ids` under `sampling`."""

    def forward(self, backend: Backend, pending: list[int], draft: Draft, cache: KVCache) -> torch.Tensor:
        """The target's logits [1 + len(draft), vocab] for this step; a strategy that needs more
        (lower layers, a second model) runs it here and keeps it for `reshape`."""
        return backend.forward(pending, draft, cache)

    def reshape(self, history: list[int], draft: Draft, logits: torch.Tensor) -> torch.Tensor:
        """The logits to decode from, same shape. `history`: prompt + committed tokens before
        this step's draft (row r's text is history + the draft path to r)."""
        return logits

    def commit(self, draft: Draft, result: VerifyResult) -> None:
        """The step's verification: keep second caches in step, advance state."""

    def describe(self) -> str:
        return self.name

    def tie_scores(self, history: list[int], logits: torch.Tensor,
                   tolerance_of: Callable[[torch.Tensor], float]) -> tuple[torch.Tensor, float]:
        """For judging a divergence from this strategy's own output (bench, tests), after
        `forward` on `history` alone: row 0's scores [vocab], and how far a gap between two of
        them can move when a model's logits round differently. `tolerance_of(row)`: that bound
        for one model's raw logit row (bench/divergence.py: tie_tolerance).

        The default bounds the gap by the reshaped scores' own scale; a strategy that combines
        several models' logits (or cuts by them) overrides this: its gap moves by the sum of
        theirs, and a token at the edge of its cut may fall on either side."""
        scores = self.reshape(history, Draft.empty(), logits)[0]
        return scores, tolerance_of(scores)


def row_paths(draft: Draft) -> list[list[int]]:
    """The draft tokens on the path to each row: [] for row 0, then the tokens from the root
    down to node i, inclusive, for row 1 + i."""
    paths: list[list[int]] = [[]]
    for node, parent in enumerate(draft.parent_list()):
        paths.append(paths[0 if parent == ROOT else 1 + parent] + [draft.tokens[node]])
    return paths


def row_parents(draft: Draft) -> list[int]:
    """For row 1 + i, the row its node follows (0 for children of the root)."""
    return [0 if parent == ROOT else 1 + parent for parent in draft.parent_list()]
