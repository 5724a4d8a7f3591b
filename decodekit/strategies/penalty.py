"""The repetition penalty (Keskar et al., 2019) as transformers applies it, along draft paths:
a token already in the text has its score divided by the penalty when positive and multiplied
by it when negative. Row r's text is the history plus the draft path to r, so each row is
penalised for its own path's tokens too — what one-token decoding would have seen there."""

from __future__ import annotations

import torch

from decodekit.strategies.base import row_paths
from decodekit.types import Draft


def penalise_repeats(scores: torch.Tensor, history: list[int], draft: Draft, penalty: float) -> torch.Tensor:
    """scores [1 + len(draft), vocab] with every row's seen tokens penalised (penalty 1: unchanged)."""
    if penalty == 1.0:
        return scores
    seen = torch.zeros(scores.shape, dtype=torch.bool)
    seen[:, torch.tensor(sorted(set(history)), dtype=torch.long)] = True
    for row, path in enumerate(row_paths(draft)):
        if path:
            seen[row, torch.tensor(path, dtype=torch.long)] = True
    seen = seen.to(scores.device)
    penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(seen, penalised, scores)
