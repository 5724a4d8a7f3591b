"""Evidence for the lossless judge: what the verifier's own logits dictated at every committed
position of a greedy run, and whether the commit followed them.

The loop calls a `Witness` after each verification with the draft, the logits the verifier
decided from (after the grammar mask and the strategy) and the verifier's result. Under greedy
decoding the only faithful commit is the argmax walk down the draft tree: row 0's argmax; if a
draft child of the root carries it, that child's row's argmax; and so on. The witness checks
every committed token against that walk itself, without trusting the verifier's account of
which nodes it accepted, and keeps each committed row's top logits for the judge, who compares
them with AR's one-token logits at a divergence (bench/divergence.py).

Exact ties (two tokens with the very same largest logit, common in bf16) may go either way: a
token whose logit equals its row's maximum is as faithful as the argmax. Positions count the
tokens the verifier committed; they are the output's positions where no grammar forces tokens
(the benchmark's runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from decodekit.tree import ROOT
from decodekit.types import Draft, VerifyResult

TOP_K = 16  # logits kept per committed row: enough to hold both tokens of any near-tie


@dataclass
class Evidence:
    """One committed position as the verifier saw it."""

    token: int  # what was committed
    top_ids: list[int]  # the row's TOP_K likeliest tokens, best first
    top_logits: list[float]


@dataclass
class Witness:
    positions: list[Evidence] = field(default_factory=list)  # one per committed (non-forced) token
    unfaithful_at: int | None = None  # the first position whose commit the logits did not dictate
    reason: str = ""

    def start(self) -> None:
        """A new generation: forget the last one."""
        self.positions, self.unfaithful_at, self.reason = [], None, ""

    def __call__(self, draft: Draft, logits: torch.Tensor, result: VerifyResult) -> None:
        """After a verification of `draft` with `logits` [1 + len(draft), vocab]."""
        children: dict[int, dict[int, int]] = {}
        for node, parent in enumerate(draft.parent_list()):
            children.setdefault(0 if parent == ROOT else 1 + parent, {}).setdefault(draft.tokens[node], 1 + node)
        row: int | None = 0
        for token in result.tokens:
            position = len(self.positions)
            if row is None:  # the walk ended at a token no draft node carries, yet more was committed
                self._flag(position, f"committed {token} after the model's own token, with no draft node to "
                                     "continue from")
                row = 0  # keep recording: the position is flagged already
            values = logits[row].float()
            top = torch.topk(values, min(TOP_K, values.numel()))
            self.positions.append(Evidence(token, top.indices.tolist(), top.values.tolist()))
            if values[token] < top.values[0]:
                self._flag(position, f"committed token {token} where its row's largest logit is token "
                                     f"{int(top.indices[0])}'s ({float(top.values[0]):.4g} against "
                                     f"{float(values[token]):.4g})")
            row = children.get(row, {}).get(token)

    def _flag(self, position: int, reason: str) -> None:
        if self.unfaithful_at is None:
            self.unfaithful_at, self.reason = position, reason

    def faithful_through(self, position: int) -> bool:
        """Did every commit up to and including `position` follow the verifier's logits?"""
        return self.unfaithful_at is None or self.unfaithful_at > position
