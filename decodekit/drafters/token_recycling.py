"""Token Recycling (Luo et al., 2024, "Turning Trash into Treasure: Accelerating Inference of
Large Language Models with Token Recycling").

Every verification computes the model's distribution at every drafted position, and all but
the accepted path are usually thrown away. Token Recycling keeps them: an adjacency matrix
`[vocab, k]` holds, for each token, the top-k tokens the model last predicted after it
(paper §3.1). A draft is a tree grown breadth-first from the last committed token along a static
template: a template node of rank r under a parent takes the parent token's r-th candidate
(paper §3.2, Fig. 3).

The paper's template has ~80 nodes, sized for a GPU where verifying 80 tokens costs about as
much as verifying one. On a CPU it does not, so only the subtree that maximises expected
tokens per unit of forward cost is verified: nodes picked best-first by their learned
acceptance rate (a deep node on the likeliest branch can beat a shallow sibling) against the
backend's measured cost curve (budget.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decodekit.budget import Budget, Calibration, Rate
from decodekit.errors import DecodekitError
from decodekit.tree import subtree
from decodekit.types import Draft, VerifyResult

UNKNOWN = -1


@dataclass(frozen=True)
class TemplateNode:
    parent: int  # index of the parent template node, -1 for the root
    rank: int  # which of the parent token's candidates this node takes
    depth: int


def make_template(widths: tuple[int, ...] = (4, 3, 2, 2, 1, 1, 1, 1)) -> list[TemplateNode]:
    """A static tree, parents first. `widths[d]` caps the children of a rank-0 node at depth d;
    a node of rank r gets `widths[d] - r` children (at least one while depth allows), so the
    likeliest branch is the deepest and widest::

        >>> [(n.parent, n.rank) for n in make_template((2, 1))]
        [(-1, 0), (-1, 1), (0, 0), (1, 0)]
    """
    nodes: list[TemplateNode] = []
    frontier = [(-1, 0, 0)]  # (template index, rank, depth) of the nodes to expand
    while frontier:
        next_frontier = []
        for index, rank, depth in frontier:
            if depth >= len(widths):
                continue
            for child_rank in range(max(1, widths[depth] - rank)):
                nodes.append(TemplateNode(index, child_rank, depth + 1))
                next_frontier.append((len(nodes) - 1, child_rank, depth + 1))
        frontier = next_frontier
    return nodes


class TokenRecyclingDrafter:
    name = "token-recycling"

    def __init__(self, k: int = 8, widths: tuple[int, ...] = (4, 3, 2, 2, 1, 1, 1, 1), max_nodes: int = 80,
                 adaptive: bool = True):
        if k < 1:
            raise DecodekitError(f"token recycling needs k >= 1, got {k}")
        self.k = k
        self.adaptive = adaptive  # False: always the whole template (what the paper does on a GPU)
        self.template = make_template(tuple(widths))[:max_nodes]
        if any(node.rank >= k for node in self.template):
            raise DecodekitError(f"the tree template uses candidate ranks beyond k={k}")
        # P(template node is on the accepted path | it was drafted); the prior fades with depth.
        self.node_rates = [Rate(hits=0.6**node.depth / (node.rank + 1), misses=1.0) for node in self.template]
        self.calibration = Calibration()  # corrects the per-node rates' optimism (budget.py)
        self.adjacency: torch.Tensor | None = None  # [vocab, k] int32, persists across calls
        self._root_token = UNKNOWN
        self._template_of: list[int] = []  # draft node -> template node

    def reset(self, prompt_ids: list[int], sampling: object = None, rng: object = None) -> None:
        pass  # the adjacency matrix is a warm start for the next prompt (paper §3.3)

    def propose(self, history: list[int], budget: Budget) -> Draft:
        self._root_token = history[-1]
        self._template_of = []
        if self.adjacency is None or budget.max_tokens < 1:
            return Draft.empty()
        tokens: list[int] = []
        parents: list[int] = []
        draft_index = {-1: -1}  # template index -> draft index (absent: pruned)
        token_of = {-1: self._root_token}
        for t_index, node in enumerate(self.template[: budget.max_tokens]):
            if node.parent not in draft_index:
                continue
            token = int(self.adjacency[token_of[node.parent], node.rank])
            if token == UNKNOWN:
                continue
            draft_index[t_index] = len(tokens)
            token_of[t_index] = token
            tokens.append(token)
            parents.append(draft_index[node.parent])
            self._template_of.append(t_index)
        if self.adaptive and tokens:
            kept = self.calibration.select(parents, [self.node_rates[t].value for t in self._template_of], budget.cost)
            tokens, parents = subtree(tokens, parents, kept)
            self._template_of = [self._template_of[i] for i in kept]
        return Draft(tokens=tokens, parents=parents) if tokens else Draft.empty()

    def observe(self, draft: Draft, result: VerifyResult, target_logits: torch.Tensor) -> None:
        # Row 0 follows the root token, row 1 + i follows draft node i (paper Alg. 1, line 9).
        rows_tokens = torch.tensor([self._root_token, *draft.tokens])
        top = torch.topk(target_logits.float(), self.k, dim=-1).indices.to("cpu", torch.int32)  # [1 + n, k]
        if self.adjacency is None:
            self.adjacency = torch.full((target_logits.shape[-1], self.k), UNKNOWN, dtype=torch.int32)
        self.adjacency[rows_tokens] = top
        accepted = set(result.accepted)
        if len(draft):
            self.calibration.observe(result.num_accepted)
        for draft_node, t_index in enumerate(self._template_of[i] for i in draft.origins):
            self.node_rates[t_index].update(int(draft_node in accepted), int(draft_node not in accepted))
        if self.adaptive:
            # Nodes left out drift back toward the prior, so one bad patch doesn't prune them for good.
            drafted = set(self._template_of)
            for t_index, rate in enumerate(self.node_rates):
                if t_index not in drafted:
                    rate.forget()
