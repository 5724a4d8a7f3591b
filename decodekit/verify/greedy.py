"""Greedy verification: keep the draft exactly as far as it agrees with the model's argmax."""

from __future__ import annotations

import torch

from decodekit.tree import ROOT, children, logits_row
from decodekit.types import Draft, VerifyResult


def verify_greedy(draft: Draft, target_logits: torch.Tensor) -> VerifyResult:
    """Walk the draft from the root, following the child whose token is the model's argmax.

    target_logits: [1 + len(draft), vocab]. Returns the accepted path and the committed tokens
    (accepted draft tokens, then the argmax after the last accepted node), which are exactly
    what one-token-at-a-time greedy decoding produces.

    Example: draft chain [7, 8, 9] and argmax per row [7, 8, 4, 2] -> accepted [0, 1],
    tokens [7, 8, 4]: the third draft token (9) loses to the model's 4.
    """
    best = target_logits.argmax(-1).tolist()  # [1 + len(draft)]
    if draft.is_chain:
        accepted = 0
        while accepted < len(draft) and draft.tokens[accepted] == best[accepted]:
            accepted += 1
        return VerifyResult(list(range(accepted)), draft.tokens[:accepted] + [best[accepted]])

    kids = children(draft.parent_list())
    node, path = ROOT, list[int]()
    while True:
        want = best[logits_row(node)]
        match = next((c for c in kids.get(node, ()) if draft.tokens[c] == want), None)
        if match is None:
            return VerifyResult(path, [draft.tokens[i] for i in path] + [want])
        path.append(match)
        node = match
