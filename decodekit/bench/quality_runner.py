"""Runs `decodekit bench-quality`: every row on every question's first turn, then the outputs'
perplexity under a scoring model, then one summary line per row (bench/quality.py's metrics).

Rows run interleaved per question (as `decodekit bench` does), so a drift of the machine spreads
over all of them. Each row has its own Decoder, built before the first question, so a bad option
fails before anything is timed.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from decodekit.api import Decoder
from decodekit.backend import Backend
from decodekit.bench.dataset import Question
from decodekit.bench.quality import QualityRow, distinct_n, is_correct, rep_n
from decodekit.prompts import conversation_ids, user_turn
from decodekit.scoring import continuation_nll


@dataclass
class QualityRecord:
    row: str
    question_id: int | str
    category: str
    prompt: str
    text: str
    new_tokens: int
    wall_s: float
    steps: int
    correct: bool | None = None  # where the question has a reference answer
    nll: float | None = None  # under the scoring model, summed over its tokens of `text`
    scored_tokens: int = 0


@dataclass
class RowSummary:
    row: str
    outputs: int
    rep_2: float
    rep_4: float
    distinct_1: float
    distinct_2: float
    mean_tokens: float
    perplexity: float | None
    accuracy: float | None
    graded: int
    tokens_per_s: float
    tau: float

    def as_dict(self) -> dict:
        return asdict(self)


def build_decoders(backend: Backend, rows: list[QualityRow]) -> dict[str, Decoder]:
    return {row.label: Decoder(backend, row.method, drafter=row.drafter, **row.method_options) for row in rows}


def run_quality(backend: Backend, rows: list[QualityRow], questions: list[Question], max_new_tokens: int,
                seed: int = 0, on_progress: Callable[[str], None] = lambda _: None) -> list[QualityRecord]:
    decoders = build_decoders(backend, rows)
    records: list[QualityRecord] = []
    for index, question in enumerate(questions):
        prompt = question.turns[0]
        reference = question.reference[0] if question.reference else None
        for row in rows[index % len(rows):] + rows[: index % len(rows)]:
            decoder = decoders[row.label]
            ids = decoder.user_prompt_ids(prompt)
            start = time.perf_counter()
            result = decoder.generate(prompt_ids=ids, max_new_tokens=max_new_tokens, seed=seed, **row.sampling)
            wall = time.perf_counter() - start
            records.append(QualityRecord(row.label, question.question_id, question.subcategory or question.category,
                                         prompt, result.text, result.stats.new_tokens, wall, result.stats.steps,
                                         None if reference is None else is_correct(result.text, reference)))
            on_progress(row.label)
    return records


def score_perplexity(scorer: Backend, records: list[QualityRecord], on_progress: Callable[[], None] = lambda: None) -> None:
    """Each output's negative log-likelihood under `scorer`, given the question in the scorer's
    own conversation format (its text re-tokenized by the scorer)."""
    prefix_specials = _leading_specials(scorer)
    for record in records:
        prompt_ids = conversation_ids(scorer, user_turn(record.prompt))
        text_ids = scorer.encode(record.text)[prefix_specials:]
        text_ids = text_ids[: max(0, scorer.context_length - len(prompt_ids) - 1)]
        record.nll = continuation_nll(scorer, prompt_ids, text_ids)
        record.scored_tokens = len(text_ids)
        on_progress()


def _leading_specials(backend: Backend) -> int:
    """How many tokens `encode` puts before any text (a BOS token, for some tokenizers)."""
    a, b = backend.encode("a"), backend.encode("b")
    count = 0
    while count < min(len(a), len(b)) and a[count] == b[count]:
        count += 1
    return count


def summarize_quality(rows: list[QualityRow], records: list[QualityRecord]) -> list[RowSummary]:
    summaries = []
    for row in rows:
        mine = [r for r in records if r.row == row.label]
        if not mine:
            continue
        texts = [r.text for r in mine]
        graded = [r.correct for r in mine if r.correct is not None]
        scored = [r for r in mine if r.nll is not None]
        tokens = sum(r.scored_tokens for r in scored)
        perplexity = math.exp(sum(r.nll or 0.0 for r in scored) / tokens) if tokens else None
        wall = sum(r.wall_s for r in mine)
        summaries.append(RowSummary(
            row=row.label, outputs=len(mine),
            rep_2=statistics.mean(rep_n(t, 2) for t in texts), rep_4=statistics.mean(rep_n(t, 4) for t in texts),
            distinct_1=distinct_n(texts, 1), distinct_2=distinct_n(texts, 2),
            mean_tokens=statistics.mean(r.new_tokens for r in mine), perplexity=perplexity,
            accuracy=sum(graded) / len(graded) if graded else None, graded=len(graded),
            tokens_per_s=sum(r.new_tokens for r in mine) / wall if wall > 0 else 0.0,
            tau=sum(r.new_tokens for r in mine) / max(1, sum(r.steps for r in mine))))
    return summaries
