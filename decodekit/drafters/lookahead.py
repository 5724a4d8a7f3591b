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

from decodekit.budget import AcceptanceEstimate, Budget, best_subtree
from decodekit.drafters.composite import merge_drafts
from decodekit.errors import DecodekitError
from decodekit.tree import subtree
from decodekit.types import Draft, VerifyResult


class LookaheadDrafter:
    name = "lookahead"

    def __init__(self, window: int = 4, ngram: int = 3, guesses: int = 3, pool_size: int = 20000,
                 adaptive: bool = True, min_window: int = 1):
        if window < 1 or ngram < 2 or guesses < 0:
            raise DecodekitError(f"lookahead needs window >= 1, ngram >= 2, guesses >= 0; got {window}, {ngram}, {guesses}")
        if pool_size < 0:
            raise DecodekitError(f"lookahead pool_size must be >= 0 (0 = no n-gram pool), got {pool_size}")
        self.window, self.ngram, self.guesses, self.pool_size = window, ngram, guesses, pool_size
        # adaptive: verify only the part of the tree that pays on this machine (False: all of it,
        # as the paper does on a GPU, where W + G(N-1) extra tokens cost almost nothing).
        self.adaptive, self.min_window = adaptive, max(1, min(min_window, window))
        self.window_estimate, self.guess_estimate = AcceptanceEstimate(), AcceptanceEstimate()
        self._guess_nodes: list[list[int]] = []  # merged indices of each verified n-gram guess
        # first token -> its continuations (N-1 tokens each), most recent last; persists across calls
        self.pool: OrderedDict[int, list[tuple[int, ...]]] = OrderedDict()
        self.iterates: deque[dict[int, int]] = deque(maxlen=ngram - 1)  # position -> guessed token
        self._root_position = 0
        self._window_nodes: list[int] = []  # merged draft index of each window token

    def reset(self, prompt_ids: list[int], sampling: object = None, rng: object = None) -> None:
        self.iterates.clear()

    def propose(self, history: list[int], budget: Budget) -> Draft:
        root = len(history) - 1
        self._root_position = root
        latest = self.iterates[-1] if self.iterates else {}
        # Positions the last iterate did not reach (after a long acceptance) start from a copy
        # of the token before them; Jacobi iteration refines them from there.
        window: list[int] = []
        for position in range(root + 1, root + 1 + min(self.window, budget.max_tokens)):
            window.append(latest.get(position, window[-1] if window else history[-1]))
        candidates = self.pool.get(history[-1], [])[-self.guesses :] if self.guesses else []
        chains = [window] + [list(c) for c in reversed(candidates)]
        merged, fitted = merge_drafts([Draft(tokens=c) for c in chains], budget.max_tokens)
        maps = [m for m in fitted if m is not None]  # the window always fits: it is first and cut to size
        if self.adaptive and merged.tokens:
            merged, maps = self._worth_verifying(merged, maps, budget)
        self._window_nodes = maps[0] if maps else []
        self._guess_nodes = maps[1:]
        return merged if merged.tokens else Draft.empty()

    def _worth_verifying(self, merged: Draft, maps: list[list[int]], budget: Budget) -> tuple[Draft, list[list[int]]]:
        """Cut the tree to what pays on this machine (budget.py), keeping `min_window` window
        tokens so that Jacobi iteration, the source of new n-grams, never stops."""
        probs = [0.0] * len(merged)
        for branch, mapping in enumerate(maps):
            estimate = self.window_estimate if branch == 0 else self.guess_estimate
            for depth, node in enumerate(mapping):
                p = estimate.first.value * estimate.cont.value**depth
                probs[node] = max(probs[node], p)
        parents = merged.parent_list()
        kept = sorted(set(best_subtree(parents, probs, budget.cost)) | set(maps[0][: self.min_window]))
        tokens, parents = subtree(merged.tokens, parents, kept)
        # Each branch keeps its prefix that survived (a chain loses its tail, never its middle).
        trimmed = _surviving(maps, kept)
        # A branch kind cut entirely drifts back toward its prior, or one bad patch would
        # switch n-gram guesses off for good (nothing drafted, nothing learned).
        if len(maps) > 1 and not any(trimmed[1:]):
            self.guess_estimate.forget()
        if len(trimmed[0]) <= self.min_window < len(maps[0]):
            self.window_estimate.forget()
        return Draft(tokens=tokens, parents=parents), trimmed

    def observe(self, draft: Draft, result: VerifyResult, target_logits: torch.Tensor) -> None:
        best = target_logits.argmax(-1).tolist()  # [1 + len(draft)]
        root = self._root_position
        if draft.origin is not None:  # a grammar cut the proposal: follow each branch as far as it survived
            self._window_nodes, *self._guess_nodes = _surviving([self._window_nodes, *self._guess_nodes], draft.origin)
        # Jacobi update: the prediction after window token i guesses position root + 2 + i.
        iterate = {root + 1: best[0]}
        for i, node in enumerate(self._window_nodes):
            iterate[root + 2 + i] = best[1 + node]
        # Committed positions are now known; the next iterate only guesses beyond them.
        self.iterates.append(iterate)
        self._collect_ngrams()
        for branch, nodes in enumerate([self._window_nodes, *self._guess_nodes]):
            if nodes:
                estimate = self.window_estimate if branch == 0 else self.guess_estimate
                estimate.update(_accepted_prefix(nodes, result.accepted), len(nodes))

    def _collect_ngrams(self) -> None:
        if len(self.iterates) < self.ngram - 1:
            return
        levels = list(self.iterates)  # oldest first; the last N-1 iterates form the diagonals
        for start in levels[0]:
            found = [levels[k].get(start + k) for k in range(len(levels))]
            gram = [token for token in found if token is not None]
            if len(gram) < len(found):
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


def _accepted_prefix(nodes: list[int], accepted: list[int]) -> int:
    """How many of a chain's leading nodes lie on the accepted path.

    >>> _accepted_prefix([3, 4, 5], [3, 4, 9])
    2
    """
    count = 0
    for node, on_path in zip(nodes, accepted):
        if node != on_path:
            break
        count += 1
    return count


def _surviving(branches: list[list[int]], origin: list[int]) -> list[list[int]]:
    """Each branch's node indices in the cut draft (node i of which is node origin[i] of the
    whole one), up to the branch's first node that was cut."""
    index = {proposed: verified for verified, proposed in enumerate(origin)}
    survived = []
    for nodes in branches:
        kept: list[int] = []
        for node in nodes:
            if node not in index:
                break
            kept.append(index[node])
        survived.append(kept)
    return survived
