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
from dataclasses import asdict, dataclass, field

from decodekit.api import Decoder
from decodekit.backend import Backend
from decodekit.bench.dataset import Question
from decodekit.bench.quality import QualityRow, distinct_n, is_correct, rep_n
from decodekit.prompts import conversation_ids, user_turn
from decodekit.scoring import continuation_nll
from decodekit.search import SEARCHES


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
    # Rows with several drafts per question (a search's n-best, or samples=k): every draft's text,
    # and their NLL and token count under the scoring model; `wall_s` covers them all.
    drafts: list[str] = field(default_factory=list)
    drafts_nll: float | None = None
    drafts_scored_tokens: int = 0


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
    drafts: int = 1  # per question
    wall_per_question: float = 0.0  # seconds, all drafts together
    drafts_distinct_1: float | None = None  # within one question's drafts, averaged over questions
    drafts_distinct_2: float | None = None
    drafts_perplexity: float | None = None  # of every draft, under the scoring model

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
            seeds: list[int | None] = [None] if row.method in SEARCHES else [seed + i for i in range(row.samples)]
            start = time.perf_counter()
            results = [_generate(decoder, ids, max_new_tokens, row.sampling, s) for s in seeds]
            wall = time.perf_counter() - start
            result = results[0]
            drafts = [c.text for c in result.candidates] if len(result.candidates) > 1 else [r.text for r in results]
            records.append(QualityRecord(row.label, question.question_id, question.subcategory or question.category,
                                         prompt, result.text, result.stats.new_tokens, wall, result.stats.steps,
                                         None if reference is None else is_correct(result.text, reference),
                                         drafts=drafts if len(drafts) > 1 else []))
            on_progress(row.label)
    return records


def _generate(decoder: Decoder, ids: list[int], max_new_tokens: int, sampling: dict, seed: int | None):
    """A search is deterministic and takes no seed; every other row is seeded."""
    if seed is None:
        return decoder.generate(prompt_ids=ids, max_new_tokens=max_new_tokens, **sampling)
    return decoder.generate(prompt_ids=ids, max_new_tokens=max_new_tokens, seed=seed, **sampling)


def score_perplexity(scorer: Backend, records: list[QualityRecord], on_progress: Callable[[], None] = lambda: None) -> None:
    """Each output's negative log-likelihood under `scorer`, given the question in the scorer's
    own conversation format (its text re-tokenized by the scorer)."""
    prefix_specials = _leading_specials(scorer)

    def nll(prompt_ids: list[int], text: str) -> tuple[float, int]:
        text_ids = scorer.encode(text)[prefix_specials:]
        text_ids = text_ids[: max(0, scorer.context_length - len(prompt_ids) - 1)]
        return continuation_nll(scorer, prompt_ids, text_ids), len(text_ids)

    for record in records:
        prompt_ids = conversation_ids(scorer, user_turn(record.prompt))
        record.nll, record.scored_tokens = nll(prompt_ids, record.text)
        if record.drafts:
            scored = [nll(prompt_ids, draft) for draft in record.drafts]
            record.drafts_nll = sum(n for n, _ in scored)
            record.drafts_scored_tokens = sum(t for _, t in scored)
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
            tau=sum(r.new_tokens for r in mine) / max(1, sum(r.steps for r in mine)),
            **_drafts_summary(mine)))
    return summaries


def _drafts_summary(records: list[QualityRecord]) -> dict:
    """For rows with several drafts per question: how many, how long they all took, how much they
    differ from each other, and how fluent they are."""
    with_drafts = [r for r in records if r.drafts]
    wall = statistics.mean(r.wall_s for r in records)
    if not with_drafts:
        return {"wall_per_question": wall}
    tokens = sum(r.drafts_scored_tokens for r in with_drafts)
    return {
        "drafts": max(len(r.drafts) for r in with_drafts), "wall_per_question": wall,
        "drafts_distinct_1": statistics.mean(distinct_n(r.drafts, 1) for r in with_drafts),
        "drafts_distinct_2": statistics.mean(distinct_n(r.drafts, 2) for r in with_drafts),
        "drafts_perplexity": (math.exp(sum(r.drafts_nll or 0.0 for r in with_drafts) / tokens) if tokens else None),
    }
