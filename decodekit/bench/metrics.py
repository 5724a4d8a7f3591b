"""From records to the numbers in the report.

Speedup follows Spec-Bench: the ratio of mean per-question tokens/s, method over decodekit AR,
on the same questions. τ is tokens committed per verification step, over all steps.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from statistics import mean

from decodekit.bench.records import QuestionRecord

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
    speedup: float | None  # vs AR on the same questions
    tau: float | None  # None: the method does not report steps
    accepted_hist: dict[int, int]
    identical: int  # questions identical to AR (greedy runs)
    compared: int  # questions compared with AR
    time_split: dict[str, float] | None  # fraction of time drafting / in forward / other

    @property
    def identical_rate(self) -> float | None:
        return self.identical / self.compared if self.compared else None


@dataclass
class Summary:
    methods: list[str]
    categories: list[str]  # in order of first appearance, without OVERALL
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)

    def cell(self, method: str, category: str) -> Cell:
        return self.cells[(method, category)]

    def mean_category_speedup(self, method: str) -> float | None:
        cells = [self.cells.get((method, c)) for c in self.categories]
        if not cells or any(cell is None or cell.speedup is None for cell in cells):
            return None  # a mean over some categories only would not compare with the others
        return mean(cell.speedup for cell in cells)

    def divergences(self, records: list[QuestionRecord]) -> list[QuestionRecord]:
        return [r for r in records if r.divergence is not None]


def summarize(records: list[QuestionRecord]) -> Summary:
    methods = list(dict.fromkeys(r.method for r in records))
    categories = list(dict.fromkeys(r.category for r in records))
    summary = Summary(methods, categories)
    for category in [*categories, OVERALL]:
        chosen = [r for r in records if category in (OVERALL, r.category)]
        ar_speed = _mean_speed([r for r in chosen if r.method == REFERENCE])
        for method in methods:
            mine = [r for r in chosen if r.method == method]
            if mine:
                summary.cells[(method, category)] = _cell(method, category, mine, ar_speed)
    return summary


def _mean_speed(records: list[QuestionRecord]) -> float | None:
    return mean(r.tokens_per_s for r in records) if records else None


def _cell(method: str, category: str, records: list[QuestionRecord], ar_speed: float | None) -> Cell:
    turns = [t for r in records for t in r.turns]
    speed = _mean_speed(records)
    stepped = [t for t in turns if t.steps]
    hist: Counter = Counter()
    for t in stepped:
        hist.update(t.accepted_hist or {})
    compared = [r for r in records if r.identical_to_ar is not None]
    return Cell(
        method=method, category=category, backend=records[0].backend, questions=len(records),
        new_tokens=sum(t.new_tokens for t in turns), wall_s=sum(t.wall_s for t in turns),
        tokens_per_s=speed, speedup=speed / ar_speed if ar_speed else None,
        tau=(sum(t.new_tokens for t in stepped) / sum(t.steps for t in stepped)) if stepped else None,
        accepted_hist=dict(sorted(hist.items())),
        identical=sum(1 for r in compared if r.identical_to_ar), compared=len(compared),
        time_split=_time_split(stepped),
    )


def _time_split(turns) -> dict[str, float] | None:
    parts = {"draft": sum(t.draft_s or 0 for t in turns), "forward": sum(t.forward_s or 0 for t in turns),
             "other": sum(t.other_s or 0 for t in turns)}
    total = sum(parts.values())
    return {k: v / total for k, v in parts.items()} if total > 0 else None
