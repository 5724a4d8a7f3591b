"""Several drafts per step from a draft model, verified so the target's distribution is kept.

SpecTr (Sun et al., 2023): `num_drafts` sequences sampled i.i.d. from the draft model, merged
into a trie, verified level by level with k-sequential selection (verify/k_seq.py), the
(1 - 1/e)-optimal rule for i.i.d. drafts.

Recursive Speculative Decoding, RSD-C (Jeon et al., 2024): a tree whose siblings are sampled
without replacement (Gumbel-top-k is the same thing as drawing one token at a time from what is
left), `width` children at the root and `branch` under every deeper node, verified by
recursive rejection sampling with each sibling checked against the distribution it was drawn
from. Without replacement, no two siblings waste the verifier's forward on the same token.

The tree grows one level per draft-model forward over the tree so far. Levels are added whole
while they fit the step's token budget; sizes never depend on the sampled values, which the
verifier's guarantee needs. Under greedy settings both reduce to deterministic drafts (SpecTr
to a chain, RSD to a tree of each node's top tokens), checked by greedy verification.
"""

from __future__ import annotations

import torch

from decodekit.budget import Budget
from decodekit.drafters.draft_model import ModelDrafterBase
from decodekit.errors import DecodekitError
from decodekit.sampling import probabilities
from decodekit.tree import ROOT
from decodekit.types import Draft, VerifyResult

# Sampled siblings at one node, at most: each takes one of a position's 255 random streams.
MAX_SIBLINGS = 64


class _TreeDrafterBase(ModelDrafterBase):
    def __init__(self, draft, draft_dtype: str, depth: int):
        super().__init__(draft, draft_dtype)
        self.check_draft_option()
        if depth < 1:
            raise DecodekitError(f"depth must be >= 1, got {depth}")
        self.depth = depth

    def _level_logits(self, history: list[int], tokens: list[int], parents: list[int]) -> torch.Tensor:
        """Draft-model logits [1 + nodes, vocab] after the committed text and after every node."""
        assert self.model is not None
        if not tokens:
            return self.model.logits_after(history)[None]
        return self.model.tree_logits(history, Draft(list(tokens), list(parents)))

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        return probabilities(logits, self.sampling).cpu()

    def observe(self, draft: Draft, result: VerifyResult, target_logits: torch.Tensor) -> None:
        pass


class SpecTrDrafter(_TreeDrafterBase):
    name = "spectr"

    def __init__(self, draft=None, num_drafts: int = 3, depth: int = 4, draft_dtype: str = ""):
        super().__init__(draft, draft_dtype, depth)
        if not 1 <= num_drafts <= MAX_SIBLINGS:
            raise DecodekitError(f"num_drafts must be in [1, {MAX_SIBLINGS}], got {num_drafts}")
        self.num_drafts = num_drafts

    def propose(self, history: list[int], budget: Budget) -> Draft:
        k = min(self.num_drafts, budget.max_tokens)  # sequences dropped by count, never by value
        if k == 0:
            return Draft.empty()
        if self.sampling.greedy:
            k = 1  # i.i.d. draws from a point mass are one sequence
        tokens, parents, rows = list[int](), list[int](), list[torch.Tensor]()
        draws: dict[int, list[int]] = {}
        at = [ROOT] * k  # each sequence's current trie node
        for level in range(self.depth):
            if level and len(tokens) + k > budget.max_tokens:
                break
            logits = self._level_logits(history, tokens, parents)  # row 1 + i: after node i
            dists = {node: self._probs(logits[node + 1]) for node in dict.fromkeys(at)}
            for s in range(k):
                parent, q = at[s], dists[at[s]]
                token = int(q.argmax()) if self.sampling.greedy else int(torch.multinomial(q, 1, generator=self.generator))
                child = next((c for c in draws.get(parent, []) if tokens[c] == token), None)
                if child is None:
                    child = len(tokens)
                    tokens.append(token)
                    parents.append(parent)
                    rows.append(q)
                draws.setdefault(parent, []).append(child)
                at[s] = child
        if self.sampling.greedy:
            return Draft(tokens)  # a chain
        return Draft(tokens, parents, draft_probs=torch.stack(rows), rule="k-seq", draws=draws)


class RsdDrafter(_TreeDrafterBase):
    name = "rsd"

    def __init__(self, draft=None, width: int = 3, branch: int = 1, depth: int = 4, draft_dtype: str = ""):
        super().__init__(draft, draft_dtype, depth)
        if not (1 <= width <= MAX_SIBLINGS and 1 <= branch <= MAX_SIBLINGS):
            raise DecodekitError(f"width and branch must be in [1, {MAX_SIBLINGS}], got width={width}, branch={branch}")
        self.width, self.branch = width, branch

    def propose(self, history: list[int], budget: Budget) -> Draft:
        tokens, parents, rows = list[int](), list[int](), list[torch.Tensor]()
        frontier = [ROOT]
        for level in range(self.depth):
            per_node = self.width if level == 0 else self.branch
            if len(tokens) + per_node * len(frontier) > budget.max_tokens:
                break
            logits = self._level_logits(history, tokens, parents)
            grown = []
            for node in frontier:
                for token, drawn_from in self._without_replacement(logits[node + 1], per_node):
                    grown.append(len(tokens))
                    tokens.append(token)
                    parents.append(node)
                    rows.append(drawn_from)
            frontier = grown
            if not frontier:
                break
        if not tokens:
            return Draft.empty()
        draft_probs = None if self.sampling.greedy else torch.stack(rows)
        return Draft(tokens, parents, draft_probs=draft_probs)

    def _without_replacement(self, logits: torch.Tensor, count: int) -> list[tuple[int, torch.Tensor]]:
        """`count` distinct tokens, each drawn from the draft distribution with the earlier ones
        removed, paired with the distribution it was drawn from. Greedy: the top tokens."""
        if self.sampling.greedy:
            top = torch.topk(logits.float(), count).indices.tolist()
            return [(int(t), torch.empty(0)) for t in top]
        left = self._probs(logits)
        drawn = []
        for _ in range(count):
            total = float(left.sum())
            if total <= 0:  # top-k / top-p left fewer tokens than siblings wanted
                break
            q = left / total
            token = int(torch.multinomial(q, 1, generator=self.generator))
            drawn.append((token, q))
            left = left.clone()
            left[token] = 0.0
        return drawn
