"""Was it lossless? Compare a method's greedy ids with AR's, turn by turn.

A divergence is not automatically a bug: batched verification can differ from one-token
decoding in the last bits, which flips the argmax only where the top two logits (nearly) tie.
So each divergence is reported with AR's top-2 logit gap there; above TIE_TOLERANCE numerics
cannot explain it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from decodekit.bench.records import Divergence, QuestionRecord

TIE_TOLERANCE = 1e-3  # fp32 logits


def first_divergence(ar_ids: Sequence[int], method_ids: Sequence[int]) -> int | None:
    """Index of the first difference; where the shorter ends if one is a prefix; None if equal.

    >>> first_divergence([1, 2, 3], [1, 2, 4]), first_divergence([1, 2], [1, 2, 3]), first_divergence([1], [1])
    (2, 2, None)
    """
    for i, (a, b) in enumerate(zip(ar_ids, method_ids)):
        if a != b:
            return i
    return None if len(ar_ids) == len(method_ids) else min(len(ar_ids), len(method_ids))


def top2_gap(logits: torch.Tensor | Sequence[float]) -> float:
    """Difference between the largest and second-largest logit."""
    values = torch.as_tensor(logits, dtype=torch.float64).flatten()
    top = torch.topk(values, 2).values
    return float(top[0] - top[1])


def check_record(ar: QuestionRecord, other: QuestionRecord, gap_fn: Callable[[int, int], float | None]) -> None:
    """Fill other.identical_to_ar and other.divergence.

    Turns after the first differing one are not compared: their prompts contain the different
    earlier answer. gap_fn(turn, position) gives AR's top-2 gap at that point.
    """
    for turn, (a, b) in enumerate(zip(ar.turns, other.turns)):
        position = first_divergence(a.token_ids, b.token_ids)
        if position is None:
            continue
        gap = gap_fn(turn, position)
        other.identical_to_ar = False
        other.divergence = Divergence(
            turn=turn, position=position,
            ar_token=a.token_ids[position] if position < len(a.token_ids) else -1,
            method_token=b.token_ids[position] if position < len(b.token_ids) else -1,
            ar_top2_gap=gap, is_bug=gap is None or gap > TIE_TOLERANCE,
        )
        return
    other.identical_to_ar = True
    other.divergence = None
