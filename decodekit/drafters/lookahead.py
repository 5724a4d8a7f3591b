"""Lookahead decoding (Fu et al., 2024, "Break the Sequential Dependency of LLM Inference Using
Lookahead Decoding"): Jacobi iteration supplies n-grams, and n-grams supply drafts.

Each step's tree has two branches, verified in one forward with one combined mask:

- the lookahead branch: a window of W guessed future tokens. The model's argmax at every
  window position is the next Jacobi iterate (paper §3.1) — every forward refines the guesses
  for all W positions at once;
- the verification branch: up to G n-grams from the pool that start with the last committed
  token (paper §3.2), each a chain of N-1 tokens.

N-grams are read along the diagonals of successive iterates: the token an iterate guessed at
position q, then what the next iterate guessed at q + 1 — which the model predicted with that
very token as its input — and so on for N tokens (paper Fig. 2, the 2-D window). The window is
part of the draft, so a guess that happens to be right is accepted like any other.
Greedy verification keeps the output exactly plain greedy decoding.
"""

from __future__ import annotations

from collections import OrderedDict, deque

import torch

from decodekit.budget import Budget
from decodekit.drafters.composite import merge_drafts
from decodekit.errors import DecodekitError
from decodekit.types import Draft, VerifyResult


class LookaheadDrafter:
    name = "lookahead"

    def __init__(self, window: int = 4, ngram: int = 3, guesses: int = 3, pool_size: int = 20000):
        if window < 1 or ngram < 2 or guesses < 0:
            raise DecodekitError(f"lookahead needs window >= 1, ngram >= 2, guesses >= 0; got {window}, {ngram}, {guesses}")
        self.window, self.ngram, self.guesses, self.pool_size = window, ngram, guesses, pool_size
        # first token -> its continuations (N-1 tokens each), most recent last; persists across calls
        self.pool: OrderedDict[int, list[tuple[int, ...]]] = OrderedDict()
        self.iterates: deque[dict[int, int]] = deque(maxlen=ngram - 1)  # position -> guessed token
        self._root_position = 0
        self._window_nodes: list[int] = []  # merged draft index of each window token

    def reset(self, prompt_ids: list[int]) -> None:
        self.iterates.clear()

    def propose(self, history: list[int], budget: Budget) -> Draft:
        root = len(history) - 1
        self._root_position = root
        latest = self.iterates[-1] if self.iterates else {}
        # Positions the last iterate did not reach (after a long acceptance) start from a copy
        # of the token before them; Jacobi iteration refines them from there.
        window = []
        for position in range(root + 1, root + 1 + self.window):
            window.append(latest.get(position, window[-1] if window else history[-1]))
        candidates = self.pool.get(history[-1], [])[-self.guesses :] if self.guesses else []
        chains = [Draft(tokens=window)] + [Draft(tokens=list(c)) for c in reversed(candidates)]
        merged, maps = merge_drafts(chains, budget.max_tokens)
        self._window_nodes = maps[0] or []
        return merged if merged.tokens else Draft.empty()

    def observe(self, draft: Draft, result: VerifyResult, target_logits: torch.Tensor) -> None:
        best = target_logits.argmax(-1).tolist()  # [1 + len(draft)]
        root = self._root_position
        # Jacobi update: the prediction after window token i guesses position root + 2 + i.
        iterate = {root + 1: best[0]}
        for i, node in enumerate(self._window_nodes):
            iterate[root + 2 + i] = best[1 + node]
        # Committed positions are now known; the next iterate only guesses beyond them.
        self.iterates.append(iterate)
        self._collect_ngrams()

    def _collect_ngrams(self) -> None:
        if len(self.iterates) < self.ngram - 1:
            return
        levels = list(self.iterates)  # oldest first; the last N-1 iterates form the diagonals
        for start in levels[0]:
            gram = [levels[k].get(start + k) for k in range(len(levels))]
            if None in gram:
                continue
            # The newest iterate also predicted the token after the diagonal's end.
            head, continuation = gram[0], tuple(gram[1:])
            if len(continuation) < self.ngram - 1:
                nxt = levels[-1].get(start + len(levels))
                if nxt is None:
                    continue
                continuation = continuation + (nxt,)
            self._add(head, continuation)

    def _add(self, head: int, continuation: tuple[int, ...]) -> None:
        entries = self.pool.setdefault(head, [])
        if continuation in entries:
            entries.remove(continuation)
        entries.append(continuation)
        del entries[: -max(self.guesses, 1) * 4]  # keep the most recent few per head
        self.pool.move_to_end(head)
        while len(self.pool) > self.pool_size:
            self.pool.popitem(last=False)
