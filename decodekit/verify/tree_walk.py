"""Children lookup shared by the verifiers: verification walks the draft from the root down."""

from __future__ import annotations

from decodekit.types import Draft

ROOT = -1


def children_of(draft: Draft) -> dict[int, list[int]]:
    """Map each node (ROOT for the last committed token) to its children, in draft order.

    >>> children_of(Draft(tokens=[5, 6, 7], parents=[-1, 0, -1]))
    {-1: [0, 2], 0: [1]}
    """
    children: dict[int, list[int]] = {}
    for node, parent in enumerate(draft.parent_list()):
        if parent >= node:
            raise ValueError(f"draft node {node} lists parent {parent}: parents must come first")
        children.setdefault(parent, []).append(node)
    return children


def logits_row(node: int) -> int:
    """Row of the target logits that predicts what follows `node`.

    Row 0 is the prediction after the last committed token (ROOT); row 1 + i after draft node i.
    """
    return node + 1
