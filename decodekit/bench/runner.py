"""Runs every method on every question in one process and collects QuestionRecords.

Methods are interleaved per question (in an order that rotates from question to question), so
a slow drift of the machine — thermal, another process — spreads over all methods instead of
landing on whichever ran last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from decodekit.api import Decoder
from decodekit.bench.baselines import HF_BASELINES, TurnRunner, hf_runner
from decodekit.bench.dataset import Question
from decodekit.bench.divergence import check_record, top2_gap
from decodekit.bench.records import QuestionRecord, TurnResult
from decodekit.drafters import METHODS, check_method
from decodekit.errors import DecodekitError
from decodekit.models.hf import HFBackend
from decodekit.types import Draft

REFERENCE = "ar"


@dataclass
class BenchSettings:
    methods: list[str]
    max_new_tokens: int = 128
    temperature: float = 0.0
    repeats: int = 1
    seed: int = 0
    method_options: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        for method in self.methods:
            if method not in HF_BASELINES:
                try:
                    check_method(method, allow_auto=False)
                except DecodekitError:
                    known = ", ".join([*METHODS, "a+b (composite)", *HF_BASELINES])
                    raise DecodekitError(f"unknown method '{method}': choose from {known}") from None
        if len(set(self.methods)) != len(self.methods):
            raise DecodekitError("a method is listed twice")
        if self.max_new_tokens < 1:
            raise DecodekitError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.repeats < 1:
            raise DecodekitError(f"repeats must be >= 1, got {self.repeats}")
        if REFERENCE not in self.methods:
            # Speedups and the losslessness check are relative to decodekit's own AR.
            self.methods.insert(0, REFERENCE)


def method_backend(method: str) -> str:
    return "hf" if method in HF_BASELINES else "decodekit"


def decodekit_runner(backend: HFBackend, method: str, settings: BenchSettings) -> TurnRunner:
    decoder = Decoder(backend, method, **settings.method_options.get(method, {}))

    def run(prompt_ids: list[int]) -> TurnResult:
        result = decoder.generate(prompt_ids=prompt_ids, max_new_tokens=settings.max_new_tokens,
                                  temperature=settings.temperature, seed=settings.seed)
        stats = result.stats
        return TurnResult(prompt_tokens=len(prompt_ids), new_tokens=stats.new_tokens, wall_s=stats.wall_s,
                          token_ids=result.token_ids, text=result.text, steps=stats.steps,
                          accepted_hist=dict(stats.accepted_hist), draft_s=stats.draft_s,
                          forward_s=stats.forward_s, other_s=stats.other_s)

    return run


def build_runners(backend: HFBackend, settings: BenchSettings, draft: HFBackend | None) -> dict[str, TurnRunner]:
    return {
        m: decodekit_runner(backend, m, settings) if m not in HF_BASELINES
        else hf_runner(m, backend, settings.max_new_tokens, settings.temperature, settings.seed, draft)
        for m in settings.methods
    }


class Conversation:
    """Spec-Bench's multi-turn protocol: each turn sees the method's own earlier answers."""

    def __init__(self, backend: HFBackend):
        self.backend = backend
        self.messages: list[dict] = []

    def prompt_ids(self, user_turn: str) -> list[int]:
        self.messages.append({"role": "user", "content": user_turn})
        if self.backend.has_chat_template:
            ids = self.backend.apply_chat_template(self.messages)
        else:  # base models: a plain transcript
            transcript = "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in self.messages)
            ids = self.backend.encode(transcript + "Assistant:")
        if len(ids) + 1 >= self.backend.context_length:
            raise DecodekitError(f"a prompt of {len(ids)} tokens does not fit the model's context of {self.backend.context_length}")
        return ids

    def answer(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})


def run_question(question: Question, method: str, runner: TurnRunner, backend: HFBackend,
                 repeats: int) -> tuple[QuestionRecord, list[list[int]]]:
    """All turns of one question by one method; also returns each turn's prompt ids."""
    record = QuestionRecord(question.question_id, question.category, method, method_backend(method))
    conversation = Conversation(backend)
    prompts = []
    for turn in question.turns:
        ids = conversation.prompt_ids(turn)
        results = [runner(ids) for _ in range(repeats)]
        # Same prompt, same greedy/seeded output: keep the first, time with the median.
        result = results[0]
        result.wall_s = sorted(r.wall_s for r in results)[len(results) // 2]
        record.turns.append(result)
        prompts.append(ids)
        conversation.answer(result.text)
    return record, prompts


def gap_function(backend: HFBackend, ar_record: QuestionRecord, ar_prompts: list[list[int]]) -> Callable[[int, int], float]:
    """AR's top-2 logit gap at `position` of turn `turn`, from one forward over AR's context."""

    def gap(turn: int, position: int) -> float:
        context = ar_prompts[turn] + ar_record.turns[turn].token_ids[:position]
        logits = backend.forward(context, Draft.empty(), backend.new_cache())  # [1, vocab]
        return top2_gap(logits[0])

    return gap


def warm_up(runners: dict[str, TurnRunner], backend: HFBackend, question: Question) -> None:
    """One short run per method: first-call costs (allocations, lazy init) stay out of the data."""
    ids = Conversation(backend).prompt_ids(question.turns[0])
    for runner in runners.values():
        runner(ids)


def run_bench(backend: HFBackend, questions: list[Question], settings: BenchSettings,
              draft: HFBackend | None = None, on_progress: Callable[[str], None] = lambda _: None) -> list[QuestionRecord]:
    runners = build_runners(backend, settings, draft)
    warm_up(runners, backend, questions[0])
    records: list[QuestionRecord] = []
    methods = settings.methods
    for q_index, question in enumerate(questions):
        order = methods[q_index % len(methods):] + methods[: q_index % len(methods)]
        by_method: dict[str, tuple[QuestionRecord, list[list[int]]]] = {}
        for method in order:
            by_method[method] = run_question(question, method, runners[method], backend, settings.repeats)
            on_progress(method)
        ar_record, ar_prompts = by_method[REFERENCE]
        for method in methods:
            record = by_method[method][0]
            if method != REFERENCE and settings.temperature == 0:
                check_record(ar_record, record, gap_function(backend, ar_record, ar_prompts))
            records.append(record)
    return records
