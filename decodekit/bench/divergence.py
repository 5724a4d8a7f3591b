"""Was it lossless? Compare a method's greedy ids with AR's, turn by turn.

A divergence is not automatically a bug: batched verification can differ from one-token
decoding in the last bits, which flips the argmax only where the top two logits (nearly) tie.
So each divergence is reported with AR's top-2 logit gap there; above TIE_TOLERANCE numerics
cannot explain it, and neither can a missing gap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from decodekit.bench.records import Divergence, QuestionRecord

TIE_TOLERANCE = 1e-3  # fp32 logits: last-bit differences of a batched forward stay far below this
ENDED = -1  # Divergence.ar_token / method_token when that side's output ended before `position`

GapFn = Callable[[int, int], float | None]  # (turn, position) -> AR's top-2 logit gap there


def first_divergence(ar_ids: Sequence[int], method_ids: Sequence[int]) -> int | None:
    """Index of the first difference; where the shorter ends if one is a prefix; None if equal.

    >>> first_divergence([1, 2, 3], [1, 2, 4]), first_divergence([1, 2], [1, 2, 3]), first_divergence([1], [1])
    (2, 2, None)
    """
    for i, (a, b) in enumerate(zip(ar_ids, method_ids)):
        if a != b:
            return i
    return None if len(ar_ids) == len(method_ids) else min(len(ar_ids), len(method_ids))


def top2_gap(logits_row: torch.Tensor | Sequence[float]) -> float:
    """Largest logit minus the second largest, computed in float64.

    >>> top2_gap([0.5, 3.0, 2.75])
    0.25
    """
    values = torch.as_tensor(logits_row, dtype=torch.float64).flatten()  # [vocab]
    if values.numel() < 2:
        raise ValueError(f"a top-2 gap needs at least two logits, got {values.numel()}")
    top = torch.topk(values, 2).values
    return float(top[0] - top[1])


def is_bug(gap: float | None) -> bool:
    """A divergence that near-tied logits cannot explain."""
    return gap is None or gap > TIE_TOLERANCE


def check_record(ar: QuestionRecord, other: QuestionRecord, gap_fn: GapFn) -> None:
    """Fill other.identical_to_ar and other.divergence.

    Turns after the first differing one are not compared: their prompts contain the different
    earlier answer. gap_fn(turn, position) gives AR's top-2 gap at that point; it is called
    only for a divergence inside a turn both records have.
    """
    for turn in range(max(len(ar.turns), len(other.turns))):
        if turn >= len(ar.turns) or turn >= len(other.turns):
            # A turn one side lacks (a failed or truncated run): nothing to ask gap_fn about.
            ar_ids = ar.turns[turn].token_ids if turn < len(ar.turns) else []
            method_ids = other.turns[turn].token_ids if turn < len(other.turns) else []
            _record(other, turn, 0, ar_ids, method_ids, gap=None)
            return
        ar_ids, method_ids = ar.turns[turn].token_ids, other.turns[turn].token_ids
        position = first_divergence(ar_ids, method_ids)
        if position is not None:
            _record(other, turn, position, ar_ids, method_ids, gap_fn(turn, position))
            return
    other.identical_to_ar = True
    other.divergence = None


def _record(other: QuestionRecord, turn: int, position: int, ar_ids: Sequence[int],
            method_ids: Sequence[int], gap: float | None) -> None:
    other.identical_to_ar = False
    other.divergence = Divergence(
        turn=turn, position=position,
        ar_token=ar_ids[position] if position < len(ar_ids) else ENDED,
        method_token=method_ids[position] if position < len(method_ids) else ENDED,
        ar_top2_gap=gap, is_bug=is_bug(gap),
    )
