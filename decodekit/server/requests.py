"""From a checked OpenAI request to what the engine runs: prompt ids, generation options, method.

Every check that needs no model forward happens here, in the request handler, so bad input is
answered with a 400 at once instead of after waiting its turn in the queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from decodekit.api import check_decoding
from decodekit.backend import Backend
from decodekit.errors import DecodekitError
from decodekit.grammar import check as check_grammar
from decodekit.methods import MethodSpec, parse_method, spec_text
from decodekit.prompts import check_prompt_ids, conversation_ids
from decodekit.server.limits import ServerLimits
from decodekit.server.protocol import ApiError, ChatRequest, CompletionRequest, OptionValue, parse
from decodekit.settings import GenerationSettings


@dataclass(frozen=True)
class DecodingChoice:
    """A method with its options, and the drafter that speeds up a strategy method."""

    method: str
    options: dict[str, OptionValue] = field(default_factory=dict)
    drafter: str | None = None

    @classmethod
    def parse(cls, method: str, options: dict[str, OptionValue] | None = None,
              drafter: str | None = None) -> DecodingChoice:
        """`method` may carry options in brackets ('prompt-lookup[max_draft=8]'); `options` add
        to them. Checked without a model: an unknown method or option is a DecodekitError."""
        spec = parse_method(method)
        choice = cls(spec.name, {**spec.options, **(options or {})}, drafter)
        if choice.method == "auto":
            raise DecodekitError("method 'auto' measures methods on sample prompts, which a server request has "
                                 "not got: run `decodekit generate --method auto` once and serve what it picks")
        check_decoding(choice.method, dict(choice.options), drafter)
        return choice

    def key(self) -> tuple:
        return self.method, repr(sorted(self.options.items())), self.drafter

    def label(self) -> str:
        text = spec_text(MethodSpec(self.method, self.method, dict(self.options)))
        # Not "a+b": that spells a merged drafter (copy-spec+token-recycling), not a strategy and its drafter.
        return f"{text} drafted by {self.drafter}" if self.drafter else text


@dataclass(frozen=True)
class GenerationRequest:
    kind: Literal["chat", "completion"]
    prompt_ids: list[int]
    options: dict  # generate() options, checked (GenerationSettings.from_options)
    decoding: DecodingChoice
    n: int = 1
    stream: bool = False
    include_usage: bool = False

    def options_for(self, choice: int) -> dict:
        """Choice i of n draws with seed + i, so n seeded choices differ and each is reproducible."""
        seed = self.options.get("seed")
        return self.options if seed is None or choice == 0 else {**self.options, "seed": seed + choice}


def chat_request(body: object, backend: Backend, served: str, default: DecodingChoice,
                 limits: ServerLimits) -> GenerationRequest:
    request = parse(ChatRequest, body)
    if None not in (request.max_tokens, request.max_completion_tokens) \
            and request.max_tokens != request.max_completion_tokens:
        raise ApiError(400, "max_tokens and max_completion_tokens disagree: send one of them", "max_completion_tokens")
    max_tokens, param = ((request.max_completion_tokens, "max_completion_tokens")
                         if request.max_completion_tokens is not None else (request.max_tokens, "max_tokens"))
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in request.messages]
    ids = _prompt_ids(lambda: conversation_ids(backend, messages), backend, "messages")
    return _generation("chat", request, ids, max_tokens, param, served, default, limits)


def completion_request(body: object, backend: Backend, served: str, default: DecodingChoice,
                       limits: ServerLimits) -> GenerationRequest:
    request = parse(CompletionRequest, body)
    prompt = request.prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        if len(prompt) > 1:
            raise ApiError(400, f"prompt holds {len(prompt)} prompts: this server takes one prompt per request",
                           "prompt")
        prompt = prompt[0]
    if isinstance(prompt, str):
        if not prompt:
            raise ApiError(400, "prompt is empty", "prompt")
        text = prompt
        ids = _prompt_ids(lambda: backend.encode(text), backend, "prompt")
    else:
        ids = _prompt_ids(lambda: list(prompt), backend, "prompt")
    return _generation("completion", request, ids, request.max_tokens, "max_tokens", served, default, limits)


def _prompt_ids(make: Callable[[], list[int]], backend: Backend, param: str) -> list[int]:
    try:
        return check_prompt_ids(make(), backend)
    except DecodekitError as error:
        raise ApiError(400, str(error).replace("prompt_ids", param), param) from None


def _generation(kind: Literal["chat", "completion"], request: ChatRequest | CompletionRequest, ids: list[int],
                max_tokens: int | None, max_tokens_param: str, served: str, default: DecodingChoice,
                limits: ServerLimits) -> GenerationRequest:
    if request.model is not None and request.model != served:
        raise ApiError(404, f"model '{request.model}' is not served here: this server serves '{served}'", "model",
                       kind="not_found_error")
    if max_tokens is not None and max_tokens < 1:
        raise ApiError(400, f"{max_tokens_param} must be at least 1, got {max_tokens}", max_tokens_param)
    if max_tokens is not None and max_tokens > limits.max_tokens:
        raise ApiError(400, f"{max_tokens_param} is {max_tokens}, over this server's limit of {limits.max_tokens} "
                            "(--max-tokens-limit)", max_tokens_param)
    if not 1 <= request.n <= limits.n:
        raise ApiError(400, f"n must be between 1 and {limits.n} (--max-n), got {request.n}", "n")
    options: dict = {"max_new_tokens": max_tokens or limits.default_max_tokens}
    for name in ("temperature", "top_p", "top_k", "min_p", "seed", "response_format"):
        if (value := getattr(request, name)) is not None:
            options[name] = value
    if request.stop is not None:
        options["stop"] = [request.stop] if isinstance(request.stop, str) else request.stop
        limits.check_stop(options["stop"])
    for name, value in options.items():  # one at a time, so the error names its field
        try:
            settings = GenerationSettings.from_options({name: value})
            if settings.grammar is not None:
                check_grammar(settings.grammar)  # an invalid schema is a 400 now, not after the queue
        except DecodekitError as error:
            raise ApiError(400, str(error), max_tokens_param if name == "max_new_tokens" else name) from None
    try:
        decoding = default if request.decoding is None else DecodingChoice.parse(
            *limits.requested(request.decoding.method, request.decoding.options, request.decoding.drafter))
    except DecodekitError as error:
        raise ApiError(400, str(error), "decoding.method") from None
    include_usage = request.stream_options is not None and request.stream_options.include_usage
    if request.stream_options is not None and not request.stream:
        raise ApiError(400, "stream_options goes with stream: true", "stream_options")
    return GenerationRequest(kind, ids, options, decoding, request.n, request.stream, include_usage)
