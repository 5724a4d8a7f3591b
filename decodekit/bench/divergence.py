"""Was it lossless? Compare a method's greedy ids with AR's, turn by turn.

A divergence is not automatically a bug: a batched (draft-verifying) forward can differ from a
one-token forward in the last bits, which flips the argmax only where AR's own token and the
method's token (nearly) tie. So at the first divergent position AR's logits are recomputed and
the gap between AR's token and the *method's* token is compared with a tolerance set by the
dtype, relative to the logit scale there (`tie_tolerance`). A gap above it — or a divergence
with no token to compare (one side ended early, or lacks a turn) — is flagged as a bug.

Under a strategy (`bench --strategy`) the gap is taken on the strategy's scores and the
strategy sets the tolerance from its inputs (Strategy.tie_scores): contrastive decoding's gap
moves by the expert's and the amateur's tolerances together, and a token at the edge of its
plausibility cut may fall on either side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from decodekit.bench.records import Divergence, QuestionRecord

# Relative size of a logit tie by dtype: two logits within TIE_RELATIVE * max(1, |largest
# logit|) of each other may swap order between a batched and a one-token forward. Measured on
# SmolLM2-135M (4 Spec-Bench prompts, a 17-token batched forward against 17 one-token steps),
# the largest per-logit difference relative to the largest logit was 3.5e-6 in fp32 and 3.7e-2
# in bf16; a gap between two tokens can move by twice that. fp32's 1e-3 leaves a wide margin;
# bf16's 1e-1 covers twice its measured drift; fp16 (3 more mantissa bits than bf16) is scaled
# from bf16, not measured. "q8" is llama.cpp with quantized weights, whose activations are
# quantized to 8-bit blocks: SmolLM2 Q4_1/Q4_0/Q8_0, Gemma 3 Q4_K_M and Qwen2.5-Coder-0.5B drifted
# by up to 6.3e-2 (12 Spec-Bench prompts, a 32-token batched forward against 32 one-token
# steps; about 2% of the positions swapped their top two tokens); 0.15 covers twice that.
# llama.cpp's F32 weights drifted by 1e-3 (its KV cache is fp16), so they count as fp16.
TIE_RELATIVE = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 1e-1, "q8": 1.5e-1}
ENDED = -1  # Divergence.ar_token / method_token when that side's output ended before `position`

# (turn, position, ar_token, method_token) -> (AR logit of ar_token - of method_token, tolerance)
Judge = Callable[[int, int, int, int], tuple[float, float]]


def first_divergence(ar_ids: Sequence[int], method_ids: Sequence[int]) -> int | None:
    """Index of the first difference; where the shorter ends if one is a prefix; None if equal.

    >>> first_divergence([1, 2, 3], [1, 2, 4]), first_divergence([1, 2], [1, 2, 3]), first_divergence([1], [1])
    (2, 2, None)
    """
    for i, (a, b) in enumerate(zip(ar_ids, method_ids)):
        if a != b:
            return i
    return None if len(ar_ids) == len(method_ids) else min(len(ar_ids), len(method_ids))


def tie_tolerance(logits_row: torch.Tensor | Sequence[float], dtype: str) -> float:
    """How close two logits of this row must be to count as a tie in `dtype`.

    >>> tie_tolerance([2.0, -30.0, 5.0], "fp32")
    0.03
    """
    if dtype not in TIE_RELATIVE:
        raise ValueError(f"no tie tolerance for dtype '{dtype}': choose one of {', '.join(TIE_RELATIVE)}")
    values = torch.as_tensor(logits_row, dtype=torch.float64)
    finite = values[torch.isfinite(values)]  # a strategy's scores are -inf outside its plausible set
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    return TIE_RELATIVE[dtype] * max(1.0, scale)


def logit_gap(logits_row: torch.Tensor | Sequence[float], ar_token: int, method_token: int) -> float:
    """AR's logit for its own token minus its logit for the method's token, in float64.

    >>> logit_gap([0.5, 3.0, 2.75], 1, 2)
    0.25
    """
    values = torch.as_tensor(logits_row, dtype=torch.float64).flatten()  # [vocab]
    return float(values[ar_token] - values[method_token])


def is_bug(gap: float | None, tolerance: float | None) -> bool:
    """A divergence that near-tied logits cannot explain."""
    return gap is None or tolerance is None or gap > tolerance


def check_record(ar: QuestionRecord, other: QuestionRecord, judge: Judge) -> None:
    """Fill other.identical_to_ar and other.divergence.

    Turns after the first differing one are not compared: their prompts contain the different
    earlier answer. `judge` is called only for a divergence where both sides have a token.
    """
    for turn in range(max(len(ar.turns), len(other.turns))):
        ar_ids = ar.turns[turn].token_ids if turn < len(ar.turns) else []
        method_ids = other.turns[turn].token_ids if turn < len(other.turns) else []
        if turn >= len(ar.turns) or turn >= len(other.turns):
            _record(other, turn, 0, ar_ids, method_ids, None)  # a failed or truncated run
            return
        position = first_divergence(ar_ids, method_ids)
        if position is not None:
            _record(other, turn, position, ar_ids, method_ids, judge)
            return
    other.identical_to_ar = True
    other.divergence = None


def _record(other: QuestionRecord, turn: int, position: int, ar_ids: Sequence[int],
            method_ids: Sequence[int], judge: Judge | None) -> None:
    ar_token = ar_ids[position] if position < len(ar_ids) else ENDED
    method_token = method_ids[position] if position < len(method_ids) else ENDED
    gap = tolerance = None
    if judge is not None and ENDED not in (ar_token, method_token):
        gap, tolerance = judge(turn, position, ar_token, method_token)
    other.identical_to_ar = False
    other.divergence = Divergence(turn=turn, position=position, ar_token=ar_token, method_token=method_token,
                                  logit_gap=gap, tolerance=tolerance, is_bug=is_bug(gap, tolerance))
