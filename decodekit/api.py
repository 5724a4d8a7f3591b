"""The public face: Decoder, generate() and stream().

Everything here is bookkeeping around `loop.decode`: checking input, turning the prompt into
ids, turning committed tokens into text, and adding up the stats. `generate` drains the same
generator that `stream` exposes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, Unpack

from decodekit.auto import AutoChoice, choose_method
from decodekit.backend import Backend
from decodekit.constraints import Constraint
from decodekit.constraints.constraint import GrammarConstraint
from decodekit.constraints.healing import HealingConstraint, PrefixStripper, heal_prompt, healed_grammar
from decodekit.detok import IncrementalDecoder, StopStringFilter
from decodekit.drafters import LOSSY, METHODS, check_method, make_drafter, make_lossy
from decodekit.drafters.base import Drafter, NoDrafter, attach_target
from decodekit.errors import DecodekitError
from decodekit.grammar import Grammar
from decodekit.loop import Witness, decode
from decodekit.methods import MethodSpec, parse_method, spec_text
from decodekit.models.auto_form import FormChoice, timing_method
from decodekit.models.backends import check_backend, load_model
from decodekit.models.zoo import DEFAULT_MODEL
from decodekit.prompts import check_prompt_ids, check_text, conversation_ids, user_turn
from decodekit.sampling import SamplingConfig
from decodekit.scoring import CONTENT_FREE, ChoiceScores
from decodekit.scoring import score_choices as _score_choices
from decodekit.search import SEARCHES, make_search, run_search
from decodekit.settings import GenerateOptions, GenerationSettings
from decodekit.strategies import STRATEGIES, Strategy, make_strategy
from decodekit.types import Candidate, GenerationResult, GenerationStats, Step, StopReason, TokenSource
from decodekit.verify import SeededRandomness


class Span(NamedTuple):
    """A piece of a chunk's text and where its tokens came from (an accepted draft, the model's
    own step, a grammar). Text held back for a stop string is credited to the step that releases it."""

    text: str
    source: TokenSource


@dataclass
class Chunk:
    """What a stream yields per verification step: the new text and the step behind it."""

    text: str
    step: Step
    spans: list[Span] = field(default_factory=list)  # `text` split by source


class Decoder:
    """A loaded model plus a decoding method, reusable across prompts.

    Example::

        decoder = Decoder("smollm2-135m", method="prompt-lookup")
        decoder.generate("Repeat after me: a b c d", max_new_tokens=32).text
    """

    def __init__(self, model: str | Backend = DEFAULT_MODEL, method: str = "ar", *,
                 backend: str = "hf", dtype: str = "fp32", quant: str | None = None, threads: int | None = None,
                 device: str | None = None, sample: list[str] | None = None, drafter: str | None = None,
                 progress: Callable[[str], None] | None = None, **method_options):
        """`backend`: "hf" (transformers, the default) or "llama.cpp" (the GGUF itself, in its
        shipped quantisation or re-quantised once with `quant=`, e.g. "q8_0").

        `dtype="auto"` (transformers) or `quant="auto"` (llama.cpp) loads the model in the
        form that decodes this method fastest on this machine, measured once and cached;
        `form_choice` says what was chosen, at what cost in perplexity, and what it beat.
        `progress` hears each step of that measurement.

        A strategy method (mirostat, contrastive-decoding, dola, ...) reshapes the model's
        distribution; `drafter` (a drafting method, options in brackets:
        "prompt-lookup[max_draft=8]") makes it faster without changing its output.

        `method="auto"` measures the candidate methods on `sample` (prompts like the ones
        you will send; chat models get the chat template) and keeps the fastest: see
        `auto_choice` for what it picked and why."""
        if not isinstance(model, str) and not all(hasattr(model, a) for a in ("encode", "forward", "vocab_size")):
            raise DecodekitError(f"model must be a zoo name, a folder, a .gguf file, a hub id or a loaded backend, "
                                 f"got {type(model).__name__}")
        # A bad method, option or sample fails here, before a model is loaded for nothing.
        searching = isinstance(method, str) and method in SEARCHES
        if searching:
            _check_search(method, method_options, drafter)
            strategy, drafter_spec = None, MethodSpec("ar", "ar")
        else:
            strategy, drafter_spec = _strategy_and_drafter(method, method_options, drafter)
            if strategy is None:
                check_method(method, method_options)
        if isinstance(model, str):
            check_backend(backend, dtype, quant, device)
        if method == "auto" and not (isinstance(sample, (list, tuple)) and sample):
            raise DecodekitError("method='auto' needs sample=, a non-empty list of prompts like the ones you will "
                                 f"send, to measure the methods on; got {sample!r}")
        lossy = make_lossy(method, **method_options) if method in LOSSY else None
        built: Drafter | None
        if strategy is not None:
            built = make_drafter(drafter_spec.name, **drafter_spec.options)
        elif searching:
            built = NoDrafter()
        else:
            built = None if method == "auto" else NoDrafter() if lossy else make_drafter(method, **method_options)
        timed_with = timing_method(method, method_options, spec_text(drafter_spec))
        self.backend: Backend = (load_model(model, backend, dtype=dtype, quant=quant, threads=threads, device=device,
                                            timed_with=timed_with, progress=progress)
                                 if isinstance(model, str) else model)
        self.form_choice: FormChoice | None = getattr(self.backend, "form_choice", None)
        # The model that decodes: a lossy method swaps in an approximation of it.
        self.full_backend: Backend = self.backend
        if lossy is not None:
            self.backend = lossy.backend(self.backend)
        self.strategy: Strategy = strategy or Strategy()
        self.strategy.attach(self.backend)  # an amateur model loads, and a bad layer choice fails, here
        if built is not None:
            attach_target(built, self.backend)  # a draft model loads, and a bad pairing fails, here
        # A search method (beam, ...) runs on the search loop instead (search/loop.py).
        self.search_options: dict | None = method_options if searching else None
        if searching and not hasattr(self.backend, "forward_rows"):
            raise DecodekitError(f"{method} runs several hypotheses side by side, which the {self.backend.kind} "
                                 "backend does not offer: use the transformers backend (backend='hf')")
        self.method = method
        self.auto_choice: AutoChoice | None = None
        if built is None:
            self.auto_choice = choose_method(self.backend, [self.user_prompt_ids(text) for text in sample or []])
            self.method = self.auto_choice.method
            built = self.auto_choice.drafter  # keeps what it learned on the sample
        self.drafter: Drafter = built

    def user_prompt_ids(self, text: str, system: str | None = None) -> list[int]:
        """A user's text as the model expects it: in its chat template, or a plain transcript
        for a base model (the format `decodekit bench` uses too)."""
        return self.prompt_ids(messages=user_turn(check_text(text, "the prompt"), system))

    def prompt_ids(self, prompt: str | None = None, messages: list[dict] | None = None) -> list[int]:
        """Raw `prompt` text, or `messages` in the model's conversation format, as checked ids."""
        if (prompt is None) == (messages is None):
            raise DecodekitError("pass exactly one of prompt= or messages=")
        if messages is not None:
            ids = conversation_ids(self.backend, messages)
        else:
            ids = self.backend.encode(check_text(prompt, "the prompt"))
        return check_prompt_ids(ids, self.backend)

    def _resolve_ids(self, prompt: str | None, messages: list[dict] | None, prompt_ids: list[int] | None) -> list[int]:
        if prompt_ids is None:
            return self.prompt_ids(prompt, messages)
        if prompt is not None or messages is not None:
            raise DecodekitError("pass only one of prompt=, messages= or prompt_ids=")
        return check_prompt_ids(prompt_ids, self.backend)

    def stream_chunks(self, prompt: str | None = None, *, messages: list[dict] | None = None,
                      prompt_ids: list[int] | None = None, stats: GenerationStats | None = None,
                      token_ids: list[int] | None = None, should_stop: Callable[[], bool] | None = None,
                      witness: Witness | None = None, **options: Unpack[GenerateOptions]) -> Generator[Chunk, None, None]:
        """The streaming core: yields text per step; fills `stats` and `token_ids` if given.
        A caller stops decoding by closing the generator; a search yields only at its end, so
        it asks `should_stop` before every step instead, and raises `Stopped` when told to.
        `witness` sees every verification (loop.decode; the benchmark's judge uses it)."""
        settings = GenerationSettings.from_options(options)
        ids = self._resolve_ids(prompt, messages, prompt_ids)
        return self._chunks(ids, settings, stats if stats is not None else GenerationStats(),
                            token_ids if token_ids is not None else [], should_stop=should_stop, witness=witness)

    def _chunks(self, ids: list[int], settings: GenerationSettings, stats: GenerationStats,
                token_ids: list[int], constraint: Constraint | None = None,
                should_stop: Callable[[], bool] | None = None,
                witness: Witness | None = None) -> Generator[Chunk, None, None]:
        """`constraint`: one to decode with instead of a fresh one for `settings.grammar`
        (sample_constrained passes its AlignedConstraint)."""
        if self.search_options is not None:  # a search knows its best output only at the end
            result = self._search(ids, settings, should_stop)
            token_ids.extend(result.token_ids)
            for name, value in vars(result.stats).items():
                setattr(stats, name, value)
            yield Chunk(result.text, Step(result.token_ids, 0, 0, 0.0, result.stats.forward_s, 0.0),
                        [Span(result.text, "model")])
            return
        healed = PrefixStripper("")
        if settings.heal:
            healed_ids, constraint, healed = self._healed(ids, settings.grammar)
            stats.healed_tokens, ids = len(ids) - len(healed_ids), healed_ids
        if constraint is None:
            constraint = self.constraint(settings.grammar)
        stats.prompt_tokens = len(ids)
        detok = IncrementalDecoder(self.backend.decode)
        stops = StopStringFilter(list(settings.stop))
        start = time.perf_counter()
        steps = decode(self.backend, ids, self.drafter, settings.sampling, SeededRandomness(settings.seed),
                       settings.max_new_tokens, constraint, self.strategy, witness)
        stats.stop_reason = "interrupted"  # until the loop or a stop string says otherwise
        try:
            for step in steps:
                token_ids.extend(step.tokens)
                stats.add(step)
                spans = [Span(stops.push(healed.push(detok.push(tokens))), source) for source, tokens in step.runs()]
                spans = [span for span in spans if span.text]
                text = "".join(span.text for span in spans)
                stats.wall_s = time.perf_counter() - start
                if stats.steps == 1:
                    stats.prefill_s, stats.prefill_tokens = stats.wall_s, len(step.tokens)
                if stops.stopped:
                    stats.stop_reason = "stop"
                    yield Chunk(text, step, spans)
                    return
                stats.stop_reason = step.stop_reason or stats.stop_reason
                yield Chunk(text, step, spans)
            tail = stops.push(healed.push(detok.flush())) + stops.flush()
            if tail:
                yield Chunk(tail, Step([], 0, 0, 0.0, 0.0, 0.0), [Span(tail, "model")])
        finally:
            steps.close()
            stats.wall_s = time.perf_counter() - start
            if constraint is not None:
                stats.completed = constraint.completed

    def _healed(self, ids: list[int], grammar: Grammar | None) -> tuple[list[int], Constraint | None, PrefixStripper]:
        """Token healing: the prompt without its last token, and a constraint that makes the
        output start with that token's text (dropped again from the text the caller sees).
        None for the constraint when nothing is taken back: the caller builds the usual one."""
        tokenizer = self._grammar_tokenizer()
        healing = heal_prompt(ids, tokenizer)
        if not healing.active:
            return ids, None, PrefixStripper("")
        inner = GrammarConstraint(healed_grammar(healing.prefix, grammar), tokenizer, self.backend.vocab_size,
                                  self.backend.eos_token_ids)
        return healing.prompt_ids, HealingConstraint(inner, healing.prefix, grammar is not None, tokenizer), \
            PrefixStripper(healing.prefix)

    def constraint(self, grammar: Grammar | None) -> GrammarConstraint | None:
        """A fresh grammar state for one generation (None without a grammar); a grammar that
        does not compile fails here, before anything is generated."""
        if grammar is None:
            return None
        return GrammarConstraint(grammar, self._grammar_tokenizer(), self.backend.vocab_size, self.backend.eos_token_ids)

    def _grammar_tokenizer(self):
        if not hasattr(self.backend, "grammar_tokenizer"):
            raise DecodekitError(f"the {type(self.backend).__name__} backend does not support grammars or token "
                                 "healing (it has no grammar_tokenizer())")
        return self.backend.grammar_tokenizer()

    def score_choices(self, prompt: str, choices: list[str], *, calibrate: bool = False, content: str | None = None,
                      content_free: tuple[str, ...] = CONTENT_FREE) -> ChoiceScores:
        """Multiple-choice scores of `choices` after the raw `prompt`, calibrated against
        content-free versions of it when `calibrate` (decodekit/scoring.py)."""
        return _score_choices(self.backend, prompt, choices, calibrate, content, content_free)

    def stream(self, prompt: str | None = None, *, messages: list[dict] | None = None,
               prompt_ids: list[int] | None = None, **options: Unpack[GenerateOptions]) -> Iterator[str]:
        for chunk in self.stream_chunks(prompt, messages=messages, prompt_ids=prompt_ids, **options):
            if chunk.text:
                yield chunk.text

    def generate(self, prompt: str | None = None, *, messages: list[dict] | None = None,
                 prompt_ids: list[int] | None = None, witness: Witness | None = None,
                 **options: Unpack[GenerateOptions]) -> GenerationResult:
        """Run to the end; returns the text, the generated ids and the stats. `witness`: as
        for stream_chunks."""
        settings = GenerationSettings.from_options(options)
        ids = self._resolve_ids(prompt, messages, prompt_ids)
        if self.search_options is not None:
            return self._search(ids, settings)
        stats, token_ids = GenerationStats(), list[int]()
        text = "".join(chunk.text for chunk in self._chunks(ids, settings, stats, token_ids, witness=witness))
        return GenerationResult(text=text, token_ids=token_ids, prompt_ids=ids, stats=stats)

    def _search(self, ids: list[int], settings: GenerationSettings,
                should_stop: Callable[[], bool] | None = None) -> GenerationResult:
        """A search method's run: its n-best as candidates, the best one as the text."""
        unused = [name for name, used in (("sampling settings", settings.sampling != SamplingConfig()),
                                          ("seed", settings.seed is not None), ("stop strings", bool(settings.stop)),
                                          ("a grammar", settings.grammar is not None), ("heal", settings.heal)) if used]
        if unused:
            raise DecodekitError(f"{self.method} is a deterministic search over the model's own scores: it takes "
                                 f"max_new_tokens, not {', '.join(unused)}")
        search = make_search(self.method, **(self.search_options or {}))
        result = run_search(self.backend, ids, search, settings.max_new_tokens, should_stop)
        candidates = [Candidate(self.backend.decode(h.token_ids), h.token_ids, h.score, h.log_prob)
                      for h in result.hypotheses]
        best = candidates[0]
        stats = GenerationStats(prompt_tokens=len(ids), new_tokens=len(best.token_ids), steps=result.stats.steps,
                                wall_s=result.stats.wall_s, forward_s=result.stats.forward_s,
                                other_s=result.stats.wall_s - result.stats.forward_s,
                                stop_reason=_stop_reason(best.token_ids, self.backend.eos_token_ids))
        return GenerationResult(best.text, best.token_ids, ids, stats, candidates)


def _stop_reason(token_ids: list[int], eos_ids: set[int]) -> StopReason:
    return "eos" if token_ids and token_ids[-1] in eos_ids else "length"


def check_decoding(method: str, options: dict, drafter: str | None = None) -> None:
    """What Decoder checks before it loads anything: the method, its options and the drafter."""
    if isinstance(method, str) and method in SEARCHES:
        _check_search(method, options, drafter)
        return
    strategy, _ = _strategy_and_drafter(method, options, drafter)
    if strategy is None:
        check_method(method, options)


def _check_search(method: str, options: dict, drafter: object) -> None:
    if drafter is not None:
        raise DecodekitError(f"{method} is a search over several hypotheses: it takes no drafter")
    make_search(method, **options)


def _strategy_and_drafter(method: object, options: dict, drafter: object) -> tuple[Strategy | None, MethodSpec]:
    """For a strategy method, the strategy and the drafter that speeds it up (none: 'ar')."""
    if not isinstance(method, str) or method not in STRATEGIES:
        if drafter is not None:
            raise DecodekitError(f"drafter= goes with a strategy method ({', '.join(STRATEGIES)}); "
                                 f"'{method}' is a drafting method itself")
        unknown = [part for part in method.split("+") if part not in METHODS] if isinstance(method, str) else []
        if unknown and method != "auto" and method not in LOSSY:
            which = f"'{unknown[0]}' in '{method}'" if "+" in str(method) else f"'{method}'"
            raise DecodekitError(f"unknown method {which}: choose a drafting method ({', '.join([*METHODS, *LOSSY])}, "
                                 f"a+b merged, auto), a strategy ({', '.join(STRATEGIES)}) or a search "
                                 f"({', '.join(SEARCHES)})")
        return None, MethodSpec("ar", "ar")
    if drafter is not None and not isinstance(drafter, str):
        raise DecodekitError(f"drafter must be a drafting method such as 'prompt-lookup', got {drafter!r}")
    spec = parse_method(drafter or "ar")
    if spec.name in STRATEGIES or spec.name in LOSSY or spec.name == "auto":
        raise DecodekitError(f"drafter must be a drafting method ({', '.join(METHODS)} or a+b), got '{spec.name}'")
    check_method(spec.name, spec.options, allow_auto=False)
    return make_strategy(method, **options), spec


_BACKENDS: dict[tuple[str, str, str], Backend] = {}
_DECODERS: dict[tuple, Decoder] = {}


def _decoder(model: str, method: str, backend: str, dtype: str, method_options: dict) -> Decoder:
    """Reuse loaded models, and drafters with what they learned, across module-level calls."""
    if not isinstance(method_options, dict):
        raise DecodekitError(f"method_options must be a dict such as {{'max_draft': 8}}, got {method_options!r}")
    key = (model, backend, dtype, method, repr(sorted(method_options.items())))  # repr: a list is not hashable
    if key not in _DECODERS:
        if (model, backend, dtype) not in _BACKENDS:
            _BACKENDS[(model, backend, dtype)] = load_model(model, backend, dtype=dtype)
        _DECODERS[key] = Decoder(_BACKENDS[(model, backend, dtype)], method, **method_options)
    return _DECODERS[key]


def generate(prompt: str | None = None, *, model: str = DEFAULT_MODEL, method: str = "ar", backend: str = "hf",
             dtype: str = "fp32", method_options: dict | None = None, messages: list[dict] | None = None,
             prompt_ids: list[int] | None = None, **options: Unpack[GenerateOptions]) -> GenerationResult:
    """Generate text: `decodekit.generate("Hello", method="prompt-lookup", max_new_tokens=64)`."""
    decoder = _decoder(model, method, backend, dtype, {} if method_options is None else method_options)
    return decoder.generate(prompt, messages=messages, prompt_ids=prompt_ids, **options)


def stream(prompt: str | None = None, *, model: str = DEFAULT_MODEL, method: str = "ar", backend: str = "hf",
           dtype: str = "fp32", method_options: dict | None = None, messages: list[dict] | None = None,
           prompt_ids: list[int] | None = None, **options: Unpack[GenerateOptions]) -> Iterator[str]:
    """Yield text chunks as they are committed."""
    decoder = _decoder(model, method, backend, dtype, {} if method_options is None else method_options)
    return decoder.stream(prompt, messages=messages, prompt_ids=prompt_ids, **options)


def score_choices(prompt: str, choices: list[str], *, calibrate: bool = False, content: str | None = None,
                  content_free: tuple[str, ...] = CONTENT_FREE, model: str = DEFAULT_MODEL, backend: str = "hf",
                  dtype: str = "fp32") -> ChoiceScores:
    """`decodekit.score_choices("Review: great film. Sentiment:", [" positive", " negative"],
    calibrate=True, content="great film.")`: which choice the model prefers, calibrated."""
    return _decoder(model, "ar", backend, dtype, {}).score_choices(prompt, choices, calibrate=calibrate, content=content,
                                                                   content_free=content_free)
