"""OpenAI's response objects, and the per-request speculative statistics decodekit adds to them.

The statistics go out twice, under the names two servers already use, so existing tooling reads
them without change:

    decodekit (GenerationStats)   vLLM `metrics.speculative_decoding`   llama.cpp `timings`
    steps                         num_spec_steps                          -
    drafted_tokens                num_draft_tokens                        draft_n
    accepted draft tokens         num_accepted_draft_tokens               draft_n_accepted
    tau                           mean_acceptance_length                  -
    acceptance_rate               draft_acceptance_rate                   -
    accepted per step (hist.)     acceptance_histogram (dense list: index j = steps accepting j)
    new_tokens / wall_s           tokens_per_second (decodekit's)         predicted_n / predicted_ms,
                                                                          predicted_per_second
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from decodekit.api import Chunk
from decodekit.server.requests import GenerationRequest
from decodekit.types import GenerationStats, StopReason

FINISH_REASONS: dict[StopReason | None, str] = {"eos": "stop", "stop": "stop", "length": "length",
                                                 "context": "length", "interrupted": "length", None: "length"}


@dataclass
class RequestStats:
    """Everything one request generated, over its n choices."""

    method: str
    prompt_tokens: int
    completion_tokens: int = 0
    steps: int = 0
    drafted: int = 0
    accepted: int = 0
    histogram: list[int] = field(default_factory=list)  # [j] = steps that accepted j draft tokens
    wall_s: float = 0.0
    first_token_s: float | None = None  # from arrival to the first text, queue wait included
    queued_s: float = 0.0

    def add_step(self, chunk: Chunk) -> None:
        step = chunk.step
        if not step.tokens:  # the text a stream releases at the end is not a step
            return
        while len(self.histogram) <= step.num_accepted:
            self.histogram.append(0)
        self.histogram[step.num_accepted] += 1
        self.accepted += step.num_accepted

    def add_choice(self, stats: GenerationStats) -> None:
        self.completion_tokens += stats.new_tokens
        self.steps += stats.steps
        self.drafted += stats.drafted_tokens
        self.wall_s += stats.wall_s

    @property
    def tau(self) -> float:
        return self.completion_tokens / self.steps if self.steps else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s > 0 else 0.0

    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def fields(self) -> dict:
        """The top-level fields every response (the last chunk of a stream) carries."""
        return {
            "metrics": {"speculative_decoding": {
                "method": self.method,
                "mean_acceptance_length": round(self.tau, 4),
                "draft_acceptance_rate": round(self.accepted / self.drafted, 4) if self.drafted else 0.0,
                "acceptance_histogram": self.histogram,
                "num_spec_steps": self.steps,
                "num_accepted_draft_tokens": self.accepted,
                "num_draft_tokens": self.drafted,
                "tokens_per_second": round(self.tokens_per_second, 3),
            }},
            "timings": {
                "prompt_n": self.prompt_tokens,
                "predicted_n": self.completion_tokens,
                "predicted_ms": round(self.wall_s * 1000, 3),
                "predicted_per_second": round(self.tokens_per_second, 3),
                "draft_n": self.drafted,
                "draft_n_accepted": self.accepted,
                "queued_ms": round(self.queued_s * 1000, 3),
                "first_token_ms": None if self.first_token_s is None else round(self.first_token_s * 1000, 3),
            },
        }


class Responder:
    """Builds one request's response objects: ids, timestamps and the chunk shapes of its endpoint."""

    def __init__(self, request: GenerationRequest, model: str):
        self.request, self.model = request, model
        chat = request.kind == "chat"
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"
        self.chunk_object = "chat.completion.chunk" if chat else "text_completion"

    def _envelope(self, obj: str, choices: list[dict]) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": choices}

    def _choice(self, index: int, text: str | None, finish: str | None, role: bool = False) -> dict:
        if self.request.kind == "chat":
            delta = {} if text is None else {"content": text}
            if role:
                delta = {"role": "assistant", **delta}
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}

    def opening(self, index: int) -> dict | None:
        """A chat stream names the role first, as OpenAI's does."""
        if self.request.kind != "chat":
            return None
        return self._envelope(self.chunk_object, [self._choice(index, "", None, role=True)])

    def chunk(self, index: int, chunk: Chunk) -> dict:
        """A text chunk, with decodekit's note of which text came from accepted drafts."""
        body = self._envelope(self.chunk_object, [self._choice(index, chunk.text, None)])
        step = chunk.step
        body["decodekit"] = {"spans": [[span.text, span.source] for span in chunk.spans],
                             "tokens": len(step.tokens), "drafted": step.draft_len, "accepted": step.num_accepted}
        return body

    def finish(self, index: int, stop_reason: StopReason | None) -> dict:
        return self._envelope(self.chunk_object, [self._choice(index, None, FINISH_REASONS[stop_reason])])

    def usage_chunk(self, stats: RequestStats) -> dict:
        return {**self._envelope(self.chunk_object, []), "usage": stats.usage()}

    def complete(self, texts: list[str], stop_reasons: list[StopReason | None], stats: RequestStats) -> dict:
        """The whole response of a request that did not stream."""
        choices = []
        for index, (text, reason) in enumerate(zip(texts, stop_reasons)):
            choice: dict = {"index": index, "logprobs": None, "finish_reason": FINISH_REASONS[reason]}
            if self.request.kind == "chat":
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            choices.append(choice)
        return {**self._envelope(self.object, choices), "usage": stats.usage(), **stats.fields()}
