"""ADED (Liu et al., 2024, "Adaptive Draft-Verification for Efficient Large Language Model
Decoding"): a tri-gram model of what the model itself generates, learned during decoding, and a
draft tree grown by an MCTS-style selection that balances exploiting continuations that were
accepted before with exploring ones that were rarely tried.

- Tri-gram counts (with bi-gram back-off) over the prompt and every committed token.
- Each candidate continuation x of a context (a, b) keeps how often it was drafted and how
  often the model accepted it. Its score is an upper confidence bound (UCB1, as in MCTS tree
  policies): the acceptance rate, smoothed toward the tri-gram probability, plus
  c·sqrt(ln N / n) for a candidate tried n times out of N for its context.
- The tree grows best-first by path score (product of the scores along the path); what is
  verified is the subtree that maximises expected tokens per unit of forward cost (budget.py),
  judged by the plain rates (no bonus) scaled by how well past predictions matched acceptance.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter, defaultdict

import torch

from decodekit.budget import Budget, Calibration
from decodekit.errors import DecodekitError
from decodekit.tree import subtree
from decodekit.types import Draft, VerifyResult


class AdedDrafter:
    name = "aded"

    def __init__(self, branching: int = 4, max_nodes: int = 32, exploration: float = 0.3, prior_weight: float = 2.0):
        if branching < 1 or max_nodes < 1 or exploration < 0:
            raise DecodekitError("aded needs branching >= 1, max_nodes >= 1 and exploration >= 0")
        self.branching, self.max_nodes = branching, max_nodes
        self.exploration, self.prior_weight = exploration, prior_weight
        self.trigram: dict[tuple[int, int], Counter] = defaultdict(Counter)
        self.bigram: dict[int, Counter] = defaultdict(Counter)
        self.tried: Counter = Counter()  # (a, b, x) -> times drafted where it could be judged
        self.accepted: Counter = Counter()  # (a, b, x) -> times accepted
        self.context_tries: Counter = Counter()  # (a, b) -> drafted children judged there
        self._tail: list[int] = []
        self.calibration = Calibration()  # the tri-gram rates' bias, measured on verification
        self._contexts: list[tuple[int, int]] = []  # per draft node: its (a, b)

    def reset(self, prompt_ids: list[int], sampling: object = None, rng: object = None) -> None:
        self._learn(prompt_ids)
        self._tail = list(prompt_ids[-2:])

    def _learn(self, tokens: list[int]) -> None:
        for a, b, c in zip(tokens, tokens[1:], tokens[2:]):
            self.trigram[(a, b)][c] += 1
        for b, c in itertools.pairwise(tokens):
            self.bigram[b][c] += 1

    def _candidates(self, a: int, b: int) -> list[tuple[int, float]]:
        counts = self.trigram.get((a, b)) or self.bigram.get(b)
        if not counts:
            return []
        total = sum(counts.values())
        return [(x, n / total) for x, n in counts.most_common(self.branching)]

    def rate_and_bonus(self, context: tuple[int, int], token: int, prior: float) -> tuple[float, float]:
        """The acceptance rate (the tri-gram probability acting as `prior_weight` pseudo-trials)
        and UCB1's exploration bonus."""
        key = (*context, token)
        tries = self.tried[key]
        rate = (self.accepted[key] + self.prior_weight * prior) / (tries + self.prior_weight)
        bonus = self.exploration * math.sqrt(math.log(self.context_tries[context] + 1) / (tries + 1))
        return rate, bonus

    def score(self, context: tuple[int, int], token: int, prior: float) -> float:
        """UCB1: the acceptance rate plus the exploration bonus, capped at 1."""
        return min(1.0, sum(self.rate_and_bonus(context, token, prior)))

    def propose(self, history: list[int], budget: Budget) -> Draft:
        self._tail = list(history[-2:])
        self._contexts = []
        limit = min(self.max_nodes, budget.max_tokens)
        if limit < 1 or len(history) < 2:
            return Draft.empty()
        tokens: list[int] = []
        parents: list[int] = []
        means: list[float] = []
        # (-UCB path score, tiebreak, parent, context, token, mean path probability)
        frontier: list[tuple[float, int, int, tuple[int, int], int, float]] = []
        counter = 0

        def push(parent: int, context: tuple[int, int], parent_score: float, parent_mean: float) -> None:
            nonlocal counter
            for token, prior in self._candidates(*context):
                rate, bonus = self.rate_and_bonus(context, token, prior)
                heapq.heappush(frontier, (-parent_score * min(1.0, rate + bonus), counter, parent, context,
                                          token, parent_mean * rate))
                counter += 1

        push(-1, (history[-2], history[-1]), 1.0, 1.0)
        while frontier and len(tokens) < limit:
            negative, _, parent, context, token, mean = heapq.heappop(frontier)
            tokens.append(token)
            parents.append(parent)
            means.append(mean)
            self._contexts.append(context)
            push(len(tokens) - 1, (context[1], token), -negative, mean)
        # The exploration bonus picks which nodes to grow; what gets verified is sized by the
        # plain estimates, or optimism would buy trees the CPU can't afford.
        kept = self.calibration.select(parents, means, budget.cost)
        self._contexts = [self._contexts[i] for i in kept]
        tokens, parents = subtree(tokens, parents, kept)
        return Draft(tokens=tokens, parents=parents) if tokens else Draft.empty()

    def observe(self, draft: Draft, result: VerifyResult, target_logits: torch.Tensor) -> None:
        on_path = set(result.accepted)
        judged_parents = on_path | {-1}
        contexts = [self._contexts[i] for i in draft.origins]  # a grammar may have cut the proposal
        for node, parent in enumerate(draft.parent_list()):
            if parent in judged_parents:  # the model saw this node's context: it was judged
                key = (*contexts[node], draft.tokens[node])
                self.tried[key] += 1
                self.accepted[key] += node in on_path
                self.context_tries[contexts[node]] += 1
        self._learn(self._tail + result.tokens)
        if len(draft):
            self.calibration.observe(result.num_accepted)
