"""Pure helpers for draft trees, in one place: the parents-first check, children lists, depths
(for position ids), ancestor masks (for attention), renumbered subtrees, and which logits row
belongs to which node.

A tree is given by parent indices, parents first, ROOT (-1) meaning "child of the last
committed token" (see types.Draft). For tokens [a, b, c, d] with parents [-1, 0, 0, -1]::

    root ─┬─ a ─┬─ b        depth:  a=1 b=2 c=2 d=1
          │     └─ c        each row may see itself and its ancestors:
          └─ d                   a b c d
                              a  1 . . .
                              b  1 1 . .
                              c  1 . 1 .
                              d  . . . 1
"""

from __future__ import annotations

import torch

ROOT = -1


def check_parents_first(parents: list[int]) -> None:
    """Every node's parent is the root or an earlier node.

    >>> check_parents_first([-1, 0, 2])
    Traceback (most recent call last):
    ...
    ValueError: tree node 2 lists parent 2: parents must come first
    """
    for node, parent in enumerate(parents):
        if not ROOT <= parent < node:
            raise ValueError(f"tree node {node} lists parent {parent}: parents must come first")


def children(parents: list[int]) -> dict[int, list[int]]:
    """Each node's children (ROOT's too), in draft order; leaves are absent.

    >>> children([-1, 0, -1])
    {-1: [0, 2], 0: [1]}
    """
    check_parents_first(parents)
    result: dict[int, list[int]] = {}
    for node, parent in enumerate(parents):
        result.setdefault(parent, []).append(node)
    return result


def depths(parents: list[int]) -> list[int]:
    """Distance of each node from the root (children of the root have depth 1).

    >>> depths([-1, 0, 0, -1, 3])
    [1, 2, 2, 1, 2]
    """
    check_parents_first(parents)
    result: list[int] = []
    for parent in parents:
        result.append(1 if parent == ROOT else result[parent] + 1)
    return result


def ancestor_mask(parents: list[int]) -> torch.Tensor:
    """[n, n] bool: entry (i, j) is True when node j is node i or one of its ancestors."""
    check_parents_first(parents)
    n = len(parents)
    mask = torch.zeros(n, n, dtype=torch.bool)
    for node, parent in enumerate(parents):
        if parent != ROOT:
            mask[node] = mask[parent]
        mask[node, node] = True
    return mask


def subtree(tokens: list[int], parents: list[int], kept: list[int]) -> tuple[list[int], list[int]]:
    """The nodes `kept` (ascending, closed under parents) renumbered as their own tree.

    >>> subtree([5, 6, 7, 8], [-1, 0, -1, 1], [0, 1, 3])
    ([5, 6, 8], [-1, 0, 1])
    """
    new_index = {ROOT: ROOT}
    new_tokens: list[int] = []
    new_parents: list[int] = []
    for node in kept:
        if parents[node] not in new_index:
            raise ValueError(f"kept node {node} without its parent {parents[node]}")
        new_index[node] = len(new_tokens)
        new_tokens.append(tokens[node])
        new_parents.append(new_index[parents[node]])
    return new_tokens, new_parents


def logits_row(node: int) -> int:
    """Row of the target logits that predicts what follows `node`.

    Row 0 is the prediction after the last committed token (ROOT); row 1 + i after draft node i.
    """
    return node + 1
