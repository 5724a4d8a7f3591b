"""Several drafters, one tree: each contributes its branches, merged as a trie so a token
sequence two drafters both propose is verified once (e.g. CopySpec's long copy plus Token
Recycling's short bushy guesses).

Each part then observes its own draft, with the accepted path and the logits rows translated
into its own node numbering, so it learns exactly as if it had drafted alone.
"""

from __future__ import annotations

import torch

from decodekit.backend import Backend
from decodekit.budget import Budget
from decodekit.drafters.base import Drafter, attach_target
from decodekit.errors import DecodekitError
from decodekit.sampling import SamplingConfig
from decodekit.types import Draft, VerifyResult
from decodekit.verify.random import Randomness


def merge_drafts(drafts: list[Draft], max_tokens: int) -> tuple[Draft, list[list[int] | None]]:
    """Trie-merge drafts (in priority order) into one tree of at most max_tokens nodes.

    Returns the merged draft and, for each input draft, the merged index of each of its nodes;
    a draft that would overflow max_tokens is left out whole (None), so every part that is in
    sees all of its nodes verified.

    >>> merged, maps = merge_drafts([Draft([1, 2]), Draft([1, 3], parents=[-1, 0])], 10)
    >>> merged.tokens, merged.parents, maps
    ([1, 2, 3], [-1, 0, 0], [[0, 1], [0, 2]])
    """
    tokens: list[int] = []
    parents: list[int] = []
    child_of: dict[tuple[int, int], int] = {}  # (merged parent, token) -> merged node
    maps: list[list[int] | None] = []
    for draft in drafts:
        new_tokens, new_parents, new_children = list(tokens), list(parents), dict(child_of)
        mapping: list[int] = []
        for token, parent in zip(draft.tokens, draft.parent_list()):
            merged_parent = -1 if parent < 0 else mapping[parent]
            node = new_children.get((merged_parent, token))
            if node is None:
                node = len(new_tokens)
                new_tokens.append(token)
                new_parents.append(merged_parent)
                new_children[(merged_parent, token)] = node
            mapping.append(node)
        if len(new_tokens) > max_tokens:
            maps.append(None)
            continue
        tokens, parents, child_of = new_tokens, new_parents, new_children
        maps.append(mapping)
    return Draft(tokens=tokens, parents=parents), maps


def project_result(draft: Draft, mapping: list[int], result: VerifyResult) -> VerifyResult:
    """The merged result as seen by one part: its nodes on the accepted path, in order."""
    on_path = {merged: depth for depth, merged in enumerate(result.accepted)}
    mine = sorted((on_path[m], i) for i, m in enumerate(mapping) if m in on_path)
    accepted = [i for _, i in mine]
    # The part's accepted nodes must form a root path in its own draft; stop where they don't.
    path, expected_parent = [], -1
    parents = draft.parent_list()
    for node in accepted:
        if parents[node] != expected_parent:
            break
        path.append(node)
        expected_parent = node
    return VerifyResult(path, [draft.tokens[i] for i in path] + result.tokens[len(path) : len(path) + 1])


class CompositeDrafter:
    """Merges the drafts of `parts` (earlier parts win when the budget is tight)."""

    def __init__(self, parts: list[Drafter]):
        if len(parts) < 2:
            raise DecodekitError("a composite drafter needs at least two parts")
        self.parts = parts
        self.name = "+".join(p.name for p in parts)
        self._last: list[tuple[Draft, list[int] | None]] = []

    def attach(self, target: Backend) -> None:
        for part in self.parts:
            attach_target(part, target)

    def reset(self, prompt_ids: list[int], sampling: SamplingConfig, rng: Randomness) -> None:
        for part in self.parts:
            part.reset(prompt_ids, sampling, rng)

    def propose(self, history: list[int], budget: Budget) -> Draft:
        # Later parts see what earlier ones already drafted: on a CPU each further node must
        # pay for its own marginal cost, or two parts sized as if alone overspend together.
        drafts, used = [], 0
        for part in self.parts:
            drafts.append(part.propose(history, budget.after(used)))
            used += len(drafts[-1])
        merged, maps = merge_drafts(drafts, budget.max_tokens)
        self._last = list(zip(drafts, maps))
        return merged if len(merged) else Draft.empty()

    def observe(self, draft: Draft, result: VerifyResult, target_logits: torch.Tensor) -> None:
        verified = {proposed: i for i, proposed in enumerate(draft.origins)}
        for part, (own, mapping) in zip(self.parts, self._last):
            if mapping is None:
                continue  # left out of this step's tree: nothing of it was verified
            if draft.origin is not None:  # a grammar cut the merged draft: each part sees what survived of its own
                kept = [i for i, m in enumerate(mapping) if m in verified]
                own, mapping = own.restrict(kept), [verified[mapping[i]] for i in kept]
            rows = [0] + [1 + m for m in mapping]
            part.observe(own, project_result(own, mapping, result), target_logits[rows])
