"""From records to the numbers in the report.

The arithmetic, spelled out once (tests/test_bench_metrics.py checks each line by hand):

- a question's speed = its new tokens over all turns / its wall time over all turns;
- a cell's tokens/s = the mean of its questions' speeds (Spec-Bench's definition: every
  question weighs the same, however long its answer);
- speedup = mean speed of the method / mean speed of decodekit AR, both over the questions
  the two have in common, so a missing answer cannot tilt the ratio;
- speedup vs the fastest AR: the same against whichever plain-decoding row has the highest
  overall speed: decodekit's AR on any model form (`ar`, `ar@bf16`, `ar@q4_0`: another dtype or
  weight type) or a library's own greedy decoding (`hf-greedy`, `llama-greedy`, on any form).
  So a method is judged against the fastest plain decoder a user already has on this machine;
- acceptance rate = accepted draft tokens / drafted tokens, summed over turns;
- τ = new tokens / verification steps, summed over every turn that reports steps (a ratio of
  sums, not a mean of per-turn ratios: long answers weigh more, as they do in wall time);
- the time split = draft / forward / other seconds, each over their sum;
- decode-only: the same speeds and speedups with each turn's first step (the prompt's prefill
  and the tokens it committed) left out, so what speculation changes is seen apart from what
  every method pays alike; prefill share = prefill seconds over wall seconds.

The overall cell pools all questions; `Summary.mean_category_speedup` is the other common
reading, the unweighted mean of the per-category speedups.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from statistics import mean

from decodekit.bench.records import QuestionRecord, TurnResult

OVERALL = "overall"
REFERENCE = "ar"


@dataclass
class Cell:
    """One method in one category (or OVERALL)."""

    method: str
    category: str
    backend: str
    questions: int
    new_tokens: int
    wall_s: float
    tokens_per_s: float  # mean of per-question tokens/s
    speedup: float | None  # vs AR on the same questions; None without AR
    speedup_fastest_ar: float | None  # vs the fastest AR row (see the module docstring)
    steps: int | None  # verification steps; None: the method does not report them
    tau: float | None  # new tokens per step over the turns that report steps
    accepted_hist: dict[int, int]  # tokens committed per step -> number of steps
    identical: int  # questions whose greedy ids equal AR's
    compared: int  # questions compared with AR (greedy runs, AR itself excluded)
    bugs: int  # divergences from AR that a near-tie of AR's logits cannot explain
    time_split: dict[str, float] | None  # share of time drafting / in forward / other
    acceptance_rate: float | None = None  # accepted / drafted draft tokens; None: nothing drafted
    perplexity: float | None = None  # of the output under the full model (AR and lossy methods)
    agreement: float | None = None  # lossy methods: share of AR's tokens reproduced before diverging
    # Decode-only (after each turn's first step); None where the prefill was not timed.
    decode_tokens_per_s: float | None = None
    decode_speedup: float | None = None
    decode_speedup_fastest_ar: float | None = None
    prefill_share: float | None = None  # prefill seconds / wall seconds

    @property
    def identical_rate(self) -> float | None:
        return self.identical / self.compared if self.compared else None


@dataclass
class Summary:
    methods: list[str]  # in order of first appearance
    categories: list[str]  # in order of first appearance, without OVERALL
    fastest_ar: str = REFERENCE
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)

    def cell(self, method: str, category: str) -> Cell:
        return self.cells[(method, category)]

    def get(self, method: str, category: str) -> Cell | None:
        return self.cells.get((method, category))

    def mean_category_speedup(self, method: str, which: str = "speedup") -> float | None:
        """Unweighted mean of the per-category speedups (`which`: a Cell's speedup field, e.g.
        "decode_speedup"); None unless every category has one."""
        cells = [self.get(method, c) for c in self.categories]
        speedups = [getattr(cell, which) for cell in cells if cell is not None and getattr(cell, which) is not None]
        if not cells or len(speedups) < len(cells):
            return None  # a mean over some categories only would not compare with the others
        return mean(speedups)


def summarize(records: list[QuestionRecord]) -> Summary:
    methods = list(dict.fromkeys(r.method for r in records))
    categories = list(dict.fromkeys(r.category for r in records))
    summary = Summary(methods, categories, fastest_ar(records))
    for category in [*categories, OVERALL]:
        chosen = [r for r in records if category in (OVERALL, r.category)]
        reference = {_key(r): r for r in chosen if r.method == REFERENCE}
        fastest = {_key(r): r for r in chosen if r.method == summary.fastest_ar}
        for method in methods:
            mine = [r for r in chosen if r.method == method]
            if mine:
                summary.cells[(method, category)] = make_cell(method, category, mine, reference, fastest)
    return summary


# A library's own plain decoding: what a user runs without decodekit.
PLAIN_BASELINES = ("hf-greedy", "llama-greedy")


def is_ar(method: str) -> bool:
    return method == REFERENCE or method.startswith(REFERENCE + "@")


def is_plain_decoding(method: str) -> bool:
    """decodekit's AR or a library's own greedy decoding, on any model form (NAME@VARIANT)."""
    return is_ar(method) or method.partition("@")[0] in PLAIN_BASELINES


def fastest_ar(records: list[QuestionRecord]) -> str:
    """The plain-decoding row with the highest mean per-question speed (REFERENCE when none
    beats it or none ran)."""
    speeds = {m: mean(r.tokens_per_s for r in records if r.method == m)
              for m in dict.fromkeys(r.method for r in records) if is_plain_decoding(m)}
    return max(speeds, key=lambda m: speeds[m]) if speeds else REFERENCE


def make_cell(method: str, category: str, records: list[QuestionRecord],
              reference: dict[tuple[str, int | str], QuestionRecord],
              fastest: dict[tuple[str, int | str], QuestionRecord] | None = None) -> Cell:
    turns = [t for r in records for t in r.turns]
    compared = [r for r in records if r.identical_to_ar is not None]
    steps, tau = step_totals(turns)
    return Cell(
        method=method, category=category, backend=records[0].backend, questions=len(records),
        new_tokens=sum(t.new_tokens for t in turns), wall_s=sum(t.wall_s for t in turns),
        tokens_per_s=mean(r.tokens_per_s for r in records),
        speedup=speedup(records, reference),
        speedup_fastest_ar=speedup(records, reference if fastest is None else fastest),
        steps=steps, tau=tau, accepted_hist=merge_histograms(turns),
        identical=sum(1 for r in compared if r.identical_to_ar), compared=len(compared),
        bugs=sum(1 for r in records if r.divergence is not None and r.divergence.is_bug),
        time_split=time_split(turns), acceptance_rate=acceptance_rate(turns), perplexity=perplexity(turns),
        agreement=agreement(records),
        decode_tokens_per_s=_mean_or_none([r.decode_tokens_per_s for r in records]),
        decode_speedup=speedup(records, reference, decode=True),
        decode_speedup_fastest_ar=speedup(records, reference if fastest is None else fastest, decode=True),
        prefill_share=prefill_share(turns),
    )


def _mean_or_none(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else mean(v for v in values if v is not None)


def prefill_share(turns: list[TurnResult]) -> float | None:
    """Prefill seconds over wall seconds; None unless every turn timed its prefill."""
    if not turns or any(t.prefill_s is None for t in turns):
        return None
    wall = sum(t.wall_s for t in turns)
    return sum(t.prefill_s or 0.0 for t in turns) / wall if wall > 0 else None


def perplexity(turns: list[TurnResult]) -> float | None:
    """exp(mean negative log-likelihood per token) over the turns that were scored."""
    scored = [t for t in turns if t.nll is not None and t.new_tokens]
    tokens = sum(t.new_tokens for t in scored)
    return math.exp(sum(t.nll or 0.0 for t in scored) / tokens) if tokens else None


def agreement(records: list[QuestionRecord]) -> float | None:
    compared = sum(r.compared_tokens or 0 for r in records)
    return sum(r.agreed_tokens or 0 for r in records) / compared if compared else None


def acceptance_rate(turns: list[TurnResult]) -> float | None:
    """Accepted over drafted draft tokens, over the turns that report both."""
    counted = [t for t in turns if t.drafted_tokens is not None and t.steps is not None]
    drafted = sum(t.drafted_tokens or 0 for t in counted)
    accepted = sum(t.new_tokens - (t.steps or 0) for t in counted)
    return accepted / drafted if drafted else None


def speedup(records: list[QuestionRecord], reference: dict[tuple[str, int | str], QuestionRecord],
            decode: bool = False) -> float | None:
    """Mean per-question tokens/s over the questions AR also answered, divided by AR's;
    `decode`: decode-only speeds (None where either side did not time its prefill)."""
    paired = [r for r in records if _key(r) in reference]
    if not paired:
        return None
    if not decode:
        ar_speed = mean(reference[_key(r)].tokens_per_s for r in paired)
        return mean(r.tokens_per_s for r in paired) / ar_speed if ar_speed > 0 else None
    mine = _mean_or_none([r.decode_tokens_per_s for r in paired])
    theirs = _mean_or_none([reference[_key(r)].decode_tokens_per_s for r in paired])
    return mine / theirs if mine is not None and theirs else None


def _key(record: QuestionRecord) -> tuple[str, int | str]:
    return record.category, record.question_id


def step_totals(turns: list[TurnResult]) -> tuple[int | None, float | None]:
    """(steps, τ) over the turns that report steps; (None, None) when none does."""
    stepped = [(t.steps, t.new_tokens) for t in turns if t.steps is not None]
    if not stepped:
        return None, None
    steps = sum(s for s, _ in stepped)
    return steps, (sum(n for _, n in stepped) / steps if steps else None)


def merge_histograms(turns: list[TurnResult]) -> dict[int, int]:
    total: Counter = Counter()
    for t in turns:
        total.update(t.accepted_hist or {})
    return dict(sorted(total.items()))


def time_split(turns: list[TurnResult]) -> dict[str, float] | None:
    parts = {"draft": sum(t.draft_s or 0.0 for t in turns), "forward": sum(t.forward_s or 0.0 for t in turns),
             "other": sum(t.other_s or 0.0 for t in turns)}
    total = sum(parts.values())
    return {k: v / total for k, v in parts.items()} if total > 0 else None
