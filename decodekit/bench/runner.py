"""Runs every method on every question in one process and collects QuestionRecords.

Methods are interleaved per question (in an order that rotates from question to question), so
a slow drift of the machine — thermal, another process — spreads over all methods instead of
landing on whichever ran last.

What a drafter may learn from: it keeps what it learned across questions, as in real use, but
never what it learned from the answer it is being timed on. So the warm-up runs on a prompt
that no question contains, and every repeat of a turn starts from the drafter state that turn
started with (the first run's learning is what carries on to the next turn).

A row may run on the model in another form: `NAME@VARIANT`, VARIANT a torch dtype on the
transformers backend (`ar@bf16`) or a weight type on llama.cpp (`copy-spec@q4_0`,
`llama-greedy@q8_0`). The model is loaded once per variant, and each variant's rows are
judged against AR in that variant (`ar@VARIANT`, added when missing): other weights are other
numerics, so exactness across variants means nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from decodekit.api import Decoder
from decodekit.backend import Backend
from decodekit.bench.baselines import BASELINES, TurnRunner, baseline_backend, baseline_runner, check_baseline
from decodekit.bench.dataset import Question
from decodekit.bench.divergence import Judge, Verdict, check_record, first_divergence, judge_rows, tie_tolerance
from decodekit.bench.metrics import is_ar
from decodekit.bench.records import QuestionRecord, TurnResult
from decodekit.bench.witness import TOP_K, Evidence, Witness
from decodekit.drafters import LOSSY, METHODS, check_method, fill_draft
from decodekit.errors import DecodekitError
from decodekit.methods import MethodSpec, parse_method, spec_text
from decodekit.models.hf import DTYPES
from decodekit.models.llamacpp.quantize import QUANTS
from decodekit.prompts import check_prompt_ids, conversation_ids
from decodekit.sampling import SamplingConfig
from decodekit.scoring import continuation_nll
from decodekit.strategies import Strategy, make_strategy
from decodekit.types import Draft

REFERENCE = "ar"
# Not a Spec-Bench question, so warming up teaches no drafter an answer it is then timed on.
WARM_UP_PROMPT = "Describe, in a short paragraph, how a bicycle's gears make climbing a hill easier."


@dataclass
class BenchSettings:
    methods: list[MethodSpec]
    max_new_tokens: int = 128
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    repeats: int = 1
    seed: int = 0
    draft: str | None = None  # the draft model of methods that take one (and of hf-assisted)
    # Every decodekit row decodes with this strategy (strategies/), its drafters speeding it up:
    # "ar" is then the strategy without a drafter, the reference the others must equal.
    strategy: MethodSpec | None = None

    def __post_init__(self):
        self.methods = [replace(spec, options=fill_draft(base_name(spec), spec.options, self.draft))
                        for spec in self.methods]
        if not self.methods:
            raise DecodekitError("no methods to benchmark: pass --methods, e.g. 'prompt-lookup,hf-prompt-lookup'")
        for spec in self.methods:
            name, at, form = spec.name.partition("@")
            if at and form not in VARIANTS:
                raise DecodekitError(f"'{spec.label}': write NAME@VARIANT, VARIANT a dtype ({', '.join(DTYPES)}; "
                                     f"transformers) or a weight type ({', '.join(QUANTS)}; llama.cpp), e.g. ar@DTYPE "
                                     "(AR with the model loaded in that form, a speed baseline)")
            if name == REFERENCE:
                if spec.options:
                    raise DecodekitError(f"'{spec.label}': ar takes no options")
                continue
            if name in BASELINES:
                if spec.options:
                    raise DecodekitError(f"'{spec.label}': the baselines take no options")
                continue
            unknown = [part for part in name.split("+") if part not in METHODS and part not in LOSSY]
            if unknown:
                known = ", ".join([*METHODS, *LOSSY, "a+b (composite)", *BASELINES])
                raise DecodekitError(f"unknown method '{unknown[0]}': choose from {known}")
            # Option values too: a typo must not wait for the model to load and the warm-up to run.
            check_method(name, spec.options, allow_auto=False)
        labels = [spec.label for spec in self.methods]
        if len(set(labels)) != len(labels):
            raise DecodekitError("a method is listed twice with the same options: give each entry different options")
        for form in self.variants:  # each variant's rows are judged against AR in that variant
            if f"{REFERENCE}@{form}" not in labels:
                first = next(i for i, spec in enumerate(self.methods) if variant(spec) == form)
                self.methods.insert(first, parse_method(f"{REFERENCE}@{form}"))
                labels = [spec.label for spec in self.methods]
        if self.max_new_tokens < 1:
            raise DecodekitError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.repeats < 1:
            raise DecodekitError(f"repeats must be >= 1, got {self.repeats}")
        if self.strategy is not None:
            self._check_strategy(self.strategy)
        if REFERENCE not in labels:
            # Speedups and the losslessness check are relative to decodekit's own AR.
            self.methods.insert(0, parse_method(REFERENCE))

    def _check_strategy(self, strategy: MethodSpec) -> None:
        make_strategy(strategy.name, **strategy.options)  # names an unknown strategy or a bad option
        others = [spec.label for spec in self.methods
                  if base_name(spec) in BASELINES or base_name(spec) in LOSSY or variant(spec)]
        if others:
            raise DecodekitError(f"with --strategy every row decodes with {strategy.name}: baselines, lossy methods "
                                 f"and NAME@VARIANT rows cannot ({', '.join(others)})")

    def check_backend(self, kind: str) -> None:
        """Baselines and variants that the chosen backend cannot run fail before loading."""
        allowed: list[str] = list(DTYPES if kind == "hf" else QUANTS)
        for spec in self.methods:
            if base_name(spec) in BASELINES:
                check_baseline(base_name(spec), kind)
            form = variant(spec)
            if form is not None and form not in allowed:
                what = "a torch dtype" if kind == "hf" else "a llama.cpp weight type"
                raise DecodekitError(f"'{spec.label}': on the {kind} backend a row's @VARIANT is {what} "
                                     f"({', '.join(allowed)})")

    @property
    def variants(self) -> list[str]:
        """The model forms the rows name (`@VARIANT`), in order: the model is loaded once more in each."""
        return list(dict.fromkeys(form for spec in self.methods if (form := variant(spec)) is not None))

    @classmethod
    def parse(cls, methods: list[str], **kwargs) -> BenchSettings:
        return cls(methods=[parse_method(m) for m in methods], **kwargs)

    @property
    def labels(self) -> list[str]:
        return [spec.label for spec in self.methods]


VARIANTS = {*DTYPES, *QUANTS}


def variant(spec: MethodSpec) -> str | None:
    """The model form a `NAME@VARIANT` row runs on; None for the model as loaded."""
    return spec.name.partition("@")[2] or None


def base_name(spec: MethodSpec) -> str:
    """The method or baseline of a row, without its @VARIANT."""
    return spec.name.partition("@")[0]


def reference_label(spec: MethodSpec) -> str:
    """The AR row a row's exactness is judged against: AR on the same model form."""
    form = variant(spec)
    return REFERENCE if form is None else f"{REFERENCE}@{form}"


def method_backend(spec: MethodSpec) -> str:
    """Who runs the method: "decodekit", or the library of a baseline ("hf", "llama.cpp")."""
    return baseline_backend(base_name(spec)) if base_name(spec) in BASELINES else "decodekit"


class MethodRunner:
    """Runs one method on a prompt, `repeats` times, the way the benchmark times it: every
    repeat starts from the same drafter state, and the first run's state carries on."""

    def __init__(self, run: TurnRunner, decoder: Decoder | None = None):
        self.run, self.decoder = run, decoder

    def __call__(self, prompt_ids: list[int], repeats: int = 1) -> TurnResult:
        if self.decoder is None:  # stateless baselines
            results = [self.run(prompt_ids) for _ in range(repeats)]
        else:
            start_state = copy.deepcopy(self.decoder.drafter)
            results = [self.run(prompt_ids)]
            carried_on = self.decoder.drafter
            for _ in range(repeats - 1):
                self.decoder.drafter = copy.deepcopy(start_state)
                results.append(self.run(prompt_ids))
            self.decoder.drafter = carried_on
        # Same prompt, same greedy/seeded output: keep the first, time with the median.
        first = results[0]
        first.wall_s = statistics.median(r.wall_s for r in results)
        if first.prefill_s is not None:
            first.prefill_s = statistics.median(r.prefill_s or 0.0 for r in results)
        return first


def decodekit_runner(backend: Backend, spec: MethodSpec, settings: BenchSettings) -> MethodRunner:
    if settings.strategy is not None:
        drafter = None if spec.name == REFERENCE else spec_text(spec)
        decoder = Decoder(backend, settings.strategy.name, drafter=drafter, **settings.strategy.options)
    else:
        decoder = Decoder(backend, spec.name, **spec.options)
    sampling = settings.sampling

    def run(prompt_ids: list[int]) -> TurnResult:
        witness = Witness() if sampling.greedy else None  # what the judge checks greedy runs against
        result = decoder.generate(prompt_ids=prompt_ids, max_new_tokens=settings.max_new_tokens,
                                  seed=settings.seed, witness=witness, **dataclasses.asdict(sampling))
        stats = result.stats
        return TurnResult(prompt_tokens=len(prompt_ids), new_tokens=stats.new_tokens, wall_s=stats.wall_s,
                          token_ids=result.token_ids, text=result.text, steps=stats.steps,
                          accepted_hist=dict(stats.accepted_hist), drafted_tokens=stats.drafted_tokens,
                          draft_s=stats.draft_s,
                          forward_s=stats.forward_s, other_s=stats.other_s, prefill_s=stats.prefill_s,
                          prefill_tokens=stats.prefill_tokens, witness=witness)

    return MethodRunner(run, decoder)


def row_backend(spec: MethodSpec, backend: Backend, variants: dict[str, Backend] | None) -> Backend:
    """The model a row runs on: `backend`, or its @VARIANT's copy."""
    form = variant(spec)
    if form is None:
        return backend
    if not variants or form not in variants:
        raise DecodekitError(f"'{spec.label}' needs the model loaded in {form}")
    return variants[form]


def build_runners(backend: Backend, settings: BenchSettings, draft: Backend | None,
                  variants: dict[str, Backend] | None = None) -> dict[str, MethodRunner]:
    runners = {}
    for spec in settings.methods:
        model = row_backend(spec, backend, variants)
        name = base_name(spec)
        if name in BASELINES:
            runners[spec.label] = MethodRunner(baseline_runner(name, model, settings.max_new_tokens,
                                                               settings.sampling, settings.seed, draft))
        else:
            runners[spec.label] = decodekit_runner(model, replace(spec, name=name), settings)
    return runners


class Conversation:
    """Spec-Bench's multi-turn protocol: each turn sees the method's own earlier answers."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.messages: list[dict] = []

    def prompt_ids(self, user_turn: str) -> list[int]:
        self.messages.append({"role": "user", "content": user_turn})
        return check_prompt_ids(conversation_ids(self.backend, self.messages), self.backend)

    def answer(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})


def run_question(question: Question, spec: MethodSpec, runner: MethodRunner, backend: Backend,
                 repeats: int) -> tuple[QuestionRecord, list[list[int]]]:
    """All turns of one question by one method; also returns each turn's prompt ids."""
    record = QuestionRecord(question.question_id, question.category, spec.label, method_backend(spec))
    conversation = Conversation(backend)
    prompts = []
    for turn in question.turns:
        ids = conversation.prompt_ids(turn)
        result = runner(ids, repeats)
        record.turns.append(result)
        prompts.append(ids)
        conversation.answer(result.text)
    return record, prompts


def ar_judge(backend: Backend, ar_record: QuestionRecord, ar_prompts: list[list[int]], method: QuestionRecord,
             strategy: Strategy | None = None) -> Judge:
    """At a divergence: AR's row there as AR decoded it (its witness), the method's verifier
    row and whether it was faithful (its witness; a library's own decoding has none), and the
    bound on the gap, from the drift measured for this backend and form, or through the strategy
    (its scores are what AR decoded from)."""

    def judge(turn: int, position: int, ar_token: int, method_token: int) -> Verdict:
        context = ar_prompts[turn] + ar_record.turns[turn].token_ids[:position]
        seen = ar_record.turns[turn].witness
        ar_row = seen.positions[position] if seen is not None and position < len(seen.positions) else None
        if strategy is None:
            if ar_row is None:  # AR ran without a witness: its row, recomputed in one forward
                ar_row = _evidence(backend.forward(context, Draft.empty(), backend.new_cache())[0], ar_token)
            tolerance = tie_tolerance(torch.tensor(ar_row.top_logits), backend)
        else:
            strategy.start(context, SamplingConfig())
            raw = strategy.forward(backend, context, Draft.empty(), backend.new_cache())
            scores, tolerance = strategy.tie_scores(context, raw, lambda row: tie_tolerance(row, backend))
            ar_row = ar_row or _evidence(scores, ar_token)
        theirs = method.turns[turn].witness
        faithful = None if theirs is None else theirs.faithful_through(position)
        their_row = theirs.positions[position] if theirs is not None and position < len(theirs.positions) else None
        return judge_rows(ar_row, their_row, ar_token, method_token, tolerance, faithful,
                          theirs.reason if theirs is not None else "")

    return judge


def _evidence(row: torch.Tensor, token: int) -> Evidence:
    top = torch.topk(row.float(), min(TOP_K, row.numel()))
    return Evidence(token, top.indices.tolist(), top.values.tolist())


def score_turns(backend: Backend, record: QuestionRecord, prompts: list[list[int]]) -> None:
    """Each turn's negative log-likelihood under the full model (one forward per turn)."""
    for turn, prompt in zip(record.turns, prompts):
        turn.nll = continuation_nll(backend, prompt, turn.token_ids)


def count_agreement(ar: QuestionRecord, lossy: QuestionRecord) -> None:
    """Tokens of AR's answer a lossy method reproduced before its first divergence, per turn."""
    agreed = compared = 0
    for ar_turn, turn in zip(ar.turns, lossy.turns):
        position = first_divergence(ar_turn.token_ids, turn.token_ids)
        agreed += len(ar_turn.token_ids) if position is None else min(position, len(ar_turn.token_ids))
        compared += len(ar_turn.token_ids)
    lossy.agreed_tokens, lossy.compared_tokens = agreed, compared


def warm_up(runners: dict[str, MethodRunner], backend: Backend) -> None:
    """One run per method on a prompt no question contains: first-call costs (allocations,
    lazy init) stay out of the data, and no drafter learns an answer it is then timed on."""
    ids = Conversation(backend).prompt_ids(WARM_UP_PROMPT)
    for runner in runners.values():
        runner(ids)


def run_bench(backend: Backend, questions: list[Question], settings: BenchSettings,
              draft: Backend | None = None, on_progress: Callable[[str], None] = lambda _: None,
              variants: dict[str, Backend] | None = None) -> list[QuestionRecord]:
    """`variants`: the model loaded in each form the `NAME@VARIANT` rows name."""
    runners = build_runners(backend, settings, draft, variants)
    warm_up(runners, backend)
    records: list[QuestionRecord] = []
    specs = settings.methods
    lossy_forms = {reference_label(s) for s in specs if base_name(s) in LOSSY}
    for q_index, question in enumerate(questions):
        order = specs[q_index % len(specs):] + specs[: q_index % len(specs)]
        by_label: dict[str, tuple[QuestionRecord, list[list[int]]]] = {}
        for spec in order:
            by_label[spec.label] = run_question(question, spec, runners[spec.label],
                                                row_backend(spec, backend, variants), settings.repeats)
            on_progress(spec.label)
        for spec in specs:
            record, prompts = by_label[spec.label]
            model = row_backend(spec, backend, variants)
            ar_record, ar_prompts = by_label[reference_label(spec)]
            if base_name(spec) in LOSSY or spec.label in lossy_forms:
                score_turns(model, record, prompts)  # what a lossy method loses, next to AR
            if base_name(spec) in LOSSY:
                if settings.sampling.greedy:
                    count_agreement(ar_record, record)
                records.append(record)
                continue
            # Exactness is judged against AR on the same model form: another one is other numerics.
            if not is_ar(spec.name) and settings.sampling.greedy:
                ar_decoder = runners[REFERENCE].decoder
                strategy = ar_decoder.strategy if settings.strategy is not None and ar_decoder else None
                check_record(ar_record, record, ar_judge(model, ar_record, ar_prompts, record, strategy))
            records.append(record)
    return records
