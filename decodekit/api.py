"""The public face: Decoder, generate() and stream().

Everything here is bookkeeping around `loop.decode`: checking input, turning the prompt into
ids, turning committed tokens into text, and adding up the stats. `generate` drains the same
generator that `stream` exposes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from decodekit.detok import IncrementalDecoder, StopStringFilter
from decodekit.drafters import make_drafter
from decodekit.drafters.base import Drafter
from decodekit.errors import DecodekitError
from decodekit.loop import decode
from decodekit.models.hf import HFBackend, load_backend
from decodekit.models.zoo import DEFAULT_MODEL
from decodekit.sampling import SamplingConfig
from decodekit.types import GenerationResult, GenerationStats, Step
from decodekit.verify import SeededRandomness


@dataclass
class Chunk:
    """What a stream yields per verification step: the new text and the step behind it."""

    text: str
    step: Step


class Decoder:
    """A loaded model plus a decoding method, reusable across prompts.

    Example::

        decoder = Decoder("smollm2-135m", method="prompt-lookup")
        decoder.generate("Repeat after me: a b c d", max_new_tokens=32).text
    """

    def __init__(self, model: str | HFBackend = DEFAULT_MODEL, method: str = "ar", *,
                 dtype: str = "fp32", threads: int | None = None, sample: list[str] | None = None,
                 **method_options):
        """`method="auto"` measures the candidate methods on `sample` (prompts like the ones
        you will send; chat models get the chat template) and keeps the fastest: see
        `auto_choice` for what it picked and why."""
        self.backend = model if isinstance(model, HFBackend) else load_backend(model, dtype=dtype, threads=threads)
        self.auto_choice = None
        if method == "auto":
            from decodekit.auto import choose_method

            ids = [self.user_prompt_ids(text) for text in (sample or [])]
            self.auto_choice = choose_method(self.backend, ids)
            self.method = self.auto_choice.method
            self.drafter: Drafter = self.auto_choice.drafter  # keeps what it learned on the sample
            return
        self.method = method
        self.drafter = make_drafter(method, **method_options)

    def user_prompt_ids(self, text: str, system: str | None = None) -> list[int]:
        """A user's text as the model expects it: in the chat template if it has one, else raw."""
        if not self.backend.has_chat_template:
            return self.prompt_ids(text)
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        return self.prompt_ids(messages=messages)

    def prompt_ids(self, prompt: str | None = None, messages: list[dict] | None = None) -> list[int]:
        if (prompt is None) == (messages is None):
            raise DecodekitError("pass exactly one of prompt= or messages=")
        if messages is not None:
            if not messages or not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages):
                raise DecodekitError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
            ids = self.backend.apply_chat_template(messages)
        else:
            if not prompt:
                raise DecodekitError("the prompt is empty")
            ids = self.backend.encode(prompt)
        if len(ids) >= self.backend.context_length:
            raise DecodekitError(
                f"the prompt is {len(ids)} tokens, but {self.backend.name} has a context of "
                f"{self.backend.context_length}: shorten it to leave room for the answer"
            )
        return ids

    def stream_chunks(self, prompt: str | None = None, *, messages: list[dict] | None = None,
                      prompt_ids: list[int] | None = None, max_new_tokens: int = 256,
                      stop: list[str] | None = None, seed: int | None = None,
                      stats: GenerationStats | None = None, token_ids: list[int] | None = None,
                      **sampling) -> Iterator[Chunk]:
        """The streaming core: yields text per step; fills `stats` and `token_ids` if given."""
        if max_new_tokens < 1:
            raise DecodekitError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        config = SamplingConfig(**sampling)
        ids = prompt_ids if prompt_ids is not None else self.prompt_ids(prompt, messages)
        stats = stats if stats is not None else GenerationStats()
        token_ids = token_ids if token_ids is not None else []
        stats.prompt_tokens = len(ids)
        detok = IncrementalDecoder(self.backend.tokenizer)
        stops = StopStringFilter(stop or [])
        start = time.perf_counter()
        steps = decode(self.backend, ids, self.drafter, config, SeededRandomness(seed), max_new_tokens)
        try:
            for step in steps:
                token_ids.extend(step.tokens)
                stats.add(step)
                text = stops.push(detok.push(step.tokens))
                stats.wall_s = time.perf_counter() - start
                if stops.stopped:
                    stats.stop_reason = "stop"
                    yield Chunk(text, step)
                    return
                yield Chunk(text, step)
            tail = stops.push(detok.flush()) + stops.flush()
            if tail:
                yield Chunk(tail, Step([], 0, 0, 0.0, 0.0, 0.0))
        finally:
            steps.close()
            stats.wall_s = time.perf_counter() - start
            if not stats.stop_reason:
                stats.stop_reason = _stop_reason(token_ids, self.backend, len(ids), max_new_tokens)

    def stream(self, prompt: str | None = None, **kwargs) -> Iterator[str]:
        for chunk in self.stream_chunks(prompt, **kwargs):
            if chunk.text:
                yield chunk.text

    def generate(self, prompt: str | None = None, *, messages: list[dict] | None = None,
                 prompt_ids: list[int] | None = None, **kwargs) -> GenerationResult:
        """Run to the end; returns the text, the generated ids and the stats."""
        ids = prompt_ids if prompt_ids is not None else self.prompt_ids(prompt, messages)
        stats, token_ids = GenerationStats(), []
        chunks = self.stream_chunks(prompt_ids=ids, stats=stats, token_ids=token_ids, **kwargs)
        text = "".join(chunk.text for chunk in chunks)
        return GenerationResult(text=text, token_ids=token_ids, prompt_ids=ids, stats=stats)


def _stop_reason(token_ids: list[int], backend: HFBackend, prompt_len: int, max_new_tokens: int) -> str:
    if token_ids and token_ids[-1] in backend.eos_token_ids:
        return "eos"
    if len(token_ids) >= max_new_tokens:
        return "length"
    if prompt_len + len(token_ids) >= backend.context_length:
        return "context"
    return "interrupted"


_BACKENDS: dict[tuple[str, str], HFBackend] = {}
_DECODERS: dict[tuple, Decoder] = {}


def _decoder(model: str, method: str, dtype: str, method_options: dict) -> Decoder:
    """Reuse loaded models, and drafters with what they learned, across module-level calls."""
    key = (model, dtype, method, tuple(sorted(method_options.items())))
    if key not in _DECODERS:
        if (model, dtype) not in _BACKENDS:
            _BACKENDS[(model, dtype)] = load_backend(model, dtype=dtype)
        _DECODERS[key] = Decoder(_BACKENDS[(model, dtype)], method, **method_options)
    return _DECODERS[key]


def generate(prompt: str | None = None, *, model: str = DEFAULT_MODEL, method: str = "ar",
             dtype: str = "fp32", method_options: dict | None = None, **kwargs) -> GenerationResult:
    """Generate text: `decodekit.generate("Hello", method="prompt-lookup", max_new_tokens=64)`."""
    return _decoder(model, method, dtype, method_options or {}).generate(prompt, **kwargs)


def stream(prompt: str | None = None, *, model: str = DEFAULT_MODEL, method: str = "ar",
           dtype: str = "fp32", method_options: dict | None = None, **kwargs) -> Iterator[str]:
    """Yield text chunks as they are committed."""
    return _decoder(model, method, dtype, method_options or {}).stream(prompt, **kwargs)
