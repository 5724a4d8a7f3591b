"""The constraint part of the one decode loop (loop.py):

    drafter.propose ─► trim(draft) ─► backend.forward ─► apply(logits) ─► verify ─► commit(tokens)

- `trim` walks the draft (chain or tree) with the grammar matcher, keeps each branch up to its
  first token the grammar refuses, and computes the allowed-token mask of every kept node on the
  way; the matcher is rolled back afterwards, so its state is untouched.
- `apply` sets the refused tokens' logits to -inf at every row, before greedy or sampled
  verification reads them, so verification picks exactly what constrained decoding one token at
  a time would pick.
- `commit` advances the matcher over the committed tokens only, then fast-forwards: tokens the
  grammar forces (a fixed key name, a closing brace) are returned to be committed without a
  forward of their own, and fed to the model with the next step's draft.

Forced tokens are the one place where committing several tokens per step could part from
decoding one at a time: decoding one at a time commits llguidance's canonical tokens for forced
text, while a draft could reach that state mid-step and let the model split the same text into
other tokens. So at a state with forced tokens the mask allows only the first forced token. A
drafter then reproduces plain constrained decoding token for token (greedy), or in distribution
(sampling).

A node whose token the grammar refuses is dropped with its subtree when the draft is
deterministic. A sampled draft (draft_probs given) keeps it as a leaf instead: rejection
sampling must see every sibling that was drawn (its residual depends on each), and the -inf
logit makes its acceptance probability 0. EOS nodes are leaves too: nothing follows them.
"""

from __future__ import annotations

import llguidance
import numpy as np
import torch

from decodekit.grammar import Grammar, compile_error
from decodekit.tree import ROOT, children
from decodekit.types import Draft


class Unconstrained:
    """The loop's constraint part when no grammar is asked for: passes everything through."""

    def trim(self, draft: Draft) -> tuple[Draft, torch.Tensor | None]:
        return draft, None

    def apply(self, logits: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        return logits

    def commit(self, tokens: list[int]) -> list[int]:
        return []

    @property
    def completed(self) -> bool | None:
        return None


class GrammarConstraint:
    """One generation's grammar state, driven by the loop (see the module docstring)."""

    def __init__(self, grammar: Grammar, tokenizer: llguidance.LLTokenizer, vocab_size: int, eos_token_ids: set[int]):
        self.grammar = grammar
        self.matcher = llguidance.LLMatcher(tokenizer, grammar.llguidance, log_level=0)
        if self.matcher.is_error():
            raise compile_error(grammar, self.matcher.get_error())
        self.vocab_size = vocab_size
        self.eos_token_ids = eos_token_ids
        self.eos = tokenizer.eos_token
        self.words = (vocab_size + 31) // 32  # a bitmask row: one bit per token
        self.forced_tokens = 0  # committed by fast-forward, over the whole generation

    @property
    def completed(self) -> bool:
        """Whether the text committed so far is a complete match of the grammar."""
        return self.matcher.is_accepting() or self.matcher.stop_reason() == "EndOfSentence"

    def trim(self, draft: Draft) -> tuple[Draft, torch.Tensor]:
        """The draft cut to its grammar-valid part, and the allowed tokens per logits row
        [1 + len(trimmed), vocab] (row 0: after the committed text; 1 + i: after node i)."""
        masks = np.zeros((1 + len(draft), self.words), dtype=np.int32)
        self._fill(masks, 0)
        kept: list[int] = []
        leaves: set[int] = set()  # kept nodes with nothing allowed after them checked: all allowed
        sampled = draft.draft_probs is not None
        kids = children(draft.parent_list())

        def visit(parent: int) -> None:
            row = masks[parent + 1]
            for node in kids.get(parent, ()):
                token = draft.tokens[node]
                valid = 0 <= token < self.vocab_size and bool(row[token >> 5] >> (token & 31) & 1)
                if token in self.eos_token_ids or not valid:
                    if valid or sampled:
                        kept.append(node)
                        leaves.add(node)
                    continue
                kept.append(node)
                if not self.matcher.consume_token(token):
                    raise RuntimeError(f"llguidance refused token {token} that its own mask allowed: "
                                       f"{self.matcher.get_error()}")
                self._fill(masks, node + 1)
                visit(node)
                self.matcher.rollback(1)

        visit(ROOT)
        kept.sort()  # parents-first order is ascending index order
        rows = [0] + [node + 1 for node in kept]
        allowed = _unpack(masks[rows], self.vocab_size)
        for i, node in enumerate(kept, start=1):
            if node in leaves:
                allowed[i] = True  # never read as a verified prefix: nothing may follow a leaf
        return draft.restrict(kept, leaves), allowed

    def apply(self, logits: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        if allowed is None:
            return logits
        return logits.masked_fill(~allowed.to(logits.device), float("-inf"))

    def commit(self, tokens: list[int]) -> list[int]:
        """Advance over committed `tokens`; return the tokens the grammar now forces (with EOS
        when the grammar can take nothing more), already consumed."""
        for token in tokens:
            if not self.matcher.consume_token(token):
                raise RuntimeError(f"token {token} was committed but the grammar refuses it: {self.matcher.get_error()}")
            if token in self.eos_token_ids:
                return []
        forced: list[int] = []
        while True:
            if self.matcher.is_stopped():
                self.matcher.consume_token(self.eos)
                forced.append(self.eos)
                break
            more = self.matcher.compute_ff_tokens()
            if not more:
                break
            if not self.matcher.consume_tokens(more):
                raise RuntimeError(f"llguidance refused its own forced tokens {more}: {self.matcher.get_error()}")
            forced.extend(more)
        self.forced_tokens += len(forced)
        return forced

    def _fill(self, masks: np.ndarray, row: int) -> None:
        """Row `row` of `masks`: the tokens allowed in the matcher's current state, or only the
        first forced token where the grammar forces some (see the module docstring)."""
        if not self.matcher.is_stopped():
            forced = self.matcher.compute_ff_tokens()
            if forced:
                masks[row] = 0
                masks.view(np.uint32)[row, forced[0] >> 5] = 1 << (forced[0] & 31)
                return
        target = masks[row]
        self.matcher.unsafe_compute_mask_ptr(target.ctypes.data, target.nbytes)


def _unpack(bitmask: np.ndarray, vocab_size: int) -> torch.Tensor:
    """[rows, words] int32 bitmask (bit i of word w: token 32 w + i) -> [rows, vocab] bool."""
    bits = np.unpackbits(bitmask.view(np.uint8), axis=1, bitorder="little")[:, :vocab_size]
    # A view, not .bool(): a torch conversion kernel here woke the thread pool for ~0.8 ms per step.
    return torch.from_numpy(np.ascontiguousarray(bits).view(np.bool_))

