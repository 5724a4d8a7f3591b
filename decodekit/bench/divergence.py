"""Was it lossless? Compare a method's greedy ids with AR's, turn by turn, and judge the first
divergence with evidence instead of excusing it with a tolerance.

A batched (draft-verifying) forward can differ from a one-token forward in the last bits, which
flips the argmax where AR's token and the method's token nearly tie. That is the only innocent
explanation, and it has three parts, each checked:

- **The method was faithful**: every token it committed is what the logits its verifier used
  dictated (bench/witness.py walks the argmax path down each draft tree itself). A verifier that
  accepts a wrong sibling, or a token one rank down, fails here whatever the logits.
- **The two rows drifted no further than numerics do**: at the divergent position the gaps from
  AR's top token to its runners-up in the verifier's row are compared with the same gaps in AR's
  own one-token row, and none may have moved by more than the bound measured for that backend and
  form (bench/drift.py, bench/data/drift.json).
- **The tokens nearly tie under AR**: AR's logit for its own token minus its logit for the
  method's token (AR's row as AR decoded it, from AR's witness) is within the same bound: that is
  how far numerics can move a gap.

Anything else is a bug: an unfaithful commit, a drift or gap over the bound, a method token
outside AR's top tokens, or a side that ended early. A library's own decoding (the baselines)
has no verifier to witness: it is judged on the gap alone.

Under a strategy (`bench --strategy`) the rows are the strategy's scores, and the bound on a gap
comes from the strategy (Strategy.tie_scores): contrastive decoding's gap moves by the expert's
and the amateur's drifts together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from decodekit.backend import Backend
from decodekit.bench.drift import TOP_GAPS, gap_bound
from decodekit.bench.records import Divergence, QuestionRecord
from decodekit.bench.witness import Evidence

ENDED = -1  # Divergence.ar_token / method_token when that side's output ended before `position`


@dataclass
class Verdict:
    gap: float | None  # AR's logit for its own token minus for the method's; None: not in AR's top tokens
    tolerance: float  # the bound on that gap
    rank: int | None = None  # the method token's rank under AR (0: AR's own); None: below AR's top tokens
    drift: float | None = None  # how far the verifier's gaps from AR's top token moved; None: no verifier
    faithful: bool | None = None  # None: not checked (a library's own decoding)
    note: str = ""  # why it is a bug, when it is

    @property
    def is_bug(self) -> bool:
        return bool(self.note)


# (turn, position, ar_token, method_token) -> the verdict there
Judge = Callable[[int, int, int, int], Verdict]


def first_divergence(ar_ids: Sequence[int], method_ids: Sequence[int]) -> int | None:
    """Index of the first difference; where the shorter ends if one is a prefix; None if equal.

    >>> first_divergence([1, 2, 3], [1, 2, 4]), first_divergence([1, 2], [1, 2, 3]), first_divergence([1], [1])
    (2, 2, None)
    """
    for i, (a, b) in enumerate(zip(ar_ids, method_ids)):
        if a != b:
            return i
    return None if len(ar_ids) == len(method_ids) else min(len(ar_ids), len(method_ids))


def tie_tolerance(logits_row: torch.Tensor | Sequence[float], backend: Backend) -> float:
    """The bound on a gap between two logits of a row of `backend`'s: what a verification can
    move it by, as measured for its kind and form (bench/drift.py). The row is not needed: the
    measured drift is in logits; it stays in the signature for strategies' tie_scores."""
    return gap_bound(backend)


def logit_gap(logits_row: torch.Tensor | Sequence[float], ar_token: int, method_token: int) -> float:
    """AR's logit for its own token minus its logit for the method's token, in float64.

    >>> logit_gap([0.5, 3.0, 2.75], 1, 2)
    0.25
    """
    values = torch.as_tensor(logits_row, dtype=torch.float64).flatten()  # [vocab]
    return float(values[ar_token] - values[method_token])


def is_bug(gap: float | None, tolerance: float | None) -> bool:
    """A gap no near-tie explains, either way (for checks without a witness: tests, grammars).

    >>> is_bug(0.01, 0.1), is_bug(0.5, 0.1), is_bug(-0.5, 0.1), is_bug(None, 0.1)
    (False, True, True, True)
    """
    return gap is None or tolerance is None or not math.isfinite(gap) or abs(gap) > tolerance


def judge_rows(ar: Evidence, method: Evidence | None, ar_token: int, method_token: int, tolerance: float,
               faithful: bool | None, unfaithful_reason: str = "") -> Verdict:
    """The verdict at a divergence from AR's row there (as AR decoded it) and, for a decodekit
    method, the verifier's row and whether the method was faithful up to there.

    >>> ar = Evidence(5, [5, 7, 2], [10.0, 9.95, 3.0])
    >>> judge_rows(ar, Evidence(7, [7, 5, 2], [9.99, 9.97, 3.0]), 5, 7, 0.2, True).is_bug
    False
    >>> judge_rows(ar, Evidence(2, [2, 5, 7], [11.0, 9.97, 9.9]), 5, 2, 0.2, True).note
    'a gap of 7 logits, over the bound of 0.2'
    """
    rank = ar.top_ids.index(method_token) if method_token in ar.top_ids else None
    gap = ar.top_logits[0] - ar.top_logits[rank] if rank is not None else None
    verdict = Verdict(gap, tolerance, rank, faithful=faithful)
    if method is not None:  # how far the verifier's gaps from AR's top token moved, over AR's runners-up
        theirs = dict(zip(method.top_ids, method.top_logits))
        floor = method.top_logits[-1]  # a token below the verifier's top list sat at most here
        top = theirs.get(ar.top_ids[0], floor)
        moved = [abs((top - theirs.get(t, floor)) - (ar.top_logits[0] - v))
                 for t, v in zip(ar.top_ids[1:TOP_GAPS + 1], ar.top_logits[1:TOP_GAPS + 1]) if math.isfinite(v)]
        verdict.drift = max(moved, default=0.0)
    if faithful is False:
        verdict.note = f"unfaithful: {unfaithful_reason}" if unfaithful_reason else "unfaithful"
    elif gap is None:
        verdict.note = f"the method's token is not among AR's top {len(ar.top_ids)}"
    elif gap > tolerance:
        verdict.note = f"a gap of {gap:.3g} logits, over the bound of {tolerance:.3g}"
    elif verdict.drift is not None and verdict.drift > tolerance:
        verdict.note = f"the verifier's gaps moved {verdict.drift:.3g} logits from AR's, over the bound of " \
                       f"{tolerance:.3g}"
    return verdict


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
    other.identical_to_ar = False
    if judge is None or ENDED in (ar_token, method_token):
        other.divergence = Divergence(turn=turn, position=position, ar_token=ar_token, method_token=method_token,
                                      logit_gap=None, tolerance=None, is_bug=True,
                                      note="one side ended early" if judge is not None else "a turn is missing")
        return
    verdict = judge(turn, position, ar_token, method_token)
    other.divergence = Divergence(turn=turn, position=position, ar_token=ar_token, method_token=method_token,
                                  logit_gap=verdict.gap, tolerance=verdict.tolerance, is_bug=verdict.is_bug,
                                  rank=verdict.rank, drift=verdict.drift,
                                  faithful=verdict.faithful, note=verdict.note)
