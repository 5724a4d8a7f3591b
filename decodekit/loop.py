"""The one decode loop. Every method is this generator with different parts plugged in.

Invariant between steps: the KV cache holds every committed token except the `pending` ones,
which are fed at the start of the next forward together with the draft. At the first step
`pending` is the whole prompt (so the prefill is just a step with a long pending part); after
that it is the single token the previous step produced::

    forward([*pending, *draft])  ->  logits for the last pending token and every draft node
    reshape                      ->  the logits the strategy decodes from (strategies/base.py)
    verify                       ->  accepted draft nodes + the model's own next token
    commit                       ->  cache keeps pending + accepted; the new token is pending

The last Step says why the loop stopped (EOS, the token budget, or a full context).

A constraint (constraints/constraint.py) trims each draft to what its grammar allows before the
forward, masks the logits before verification, and advances on committed tokens only; the
tokens its grammar then forces are committed at once and become pending with the step's last
token, so they reach the model inside the next step's forward.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator

import torch

from decodekit.backend import Backend
from decodekit.budget import Budget
from decodekit.constraints import Constraint
from decodekit.constraints.constraint import Unconstrained
from decodekit.drafters.base import Drafter
from decodekit.sampling import SamplingConfig
from decodekit.strategies.base import Strategy
from decodekit.types import Draft, Step, StopReason, VerifyResult
from decodekit.verify import Randomness, verify

# Sees every verification: the draft, the logits the verifier decided from, its result.
Witness = Callable[[Draft, torch.Tensor, VerifyResult], None]


def decode(
    backend: Backend,
    prompt_ids: list[int],
    drafter: Drafter,
    sampling: SamplingConfig,
    rng: Randomness,
    max_new_tokens: int,
    constraint: Constraint | None = None,
    strategy: Strategy | None = None,
    witness: Witness | None = None,
) -> Generator[Step, None, None]:
    """Yield one Step per verification until EOS, max_new_tokens or the context is full.

    The prompt must be non-empty and leave room for one token (api.py checks user input).
    The consumer may stop early (stop strings): closing the generator ends the loop.
    `witness` sees every verification: the draft, the logits the verifier decided from and
    its result (the benchmark's judge checks the commit against them: bench/witness.py).
    """
    constraint = constraint if constraint is not None else Unconstrained()
    strategy = strategy if strategy is not None else Strategy()
    cache = backend.new_cache()
    drafter.reset(prompt_ids, sampling, rng)
    strategy.start(prompt_ids, sampling)
    # What the grammar forces before the first token (e.g. '{"name": '): reported in the first Step.
    opening = _cut(constraint.commit([]), backend.eos_token_ids,
                   min(max_new_tokens, backend.context_length - len(prompt_ids)))
    history = list(prompt_ids) + opening
    pending = list(history)
    produced = len(opening)
    if opening and (stop := _stop_reason(opening, backend, produced, max_new_tokens, len(history))):
        yield Step(opening, 0, 0, 0.0, 0.0, 0.0, stop, forced=len(opening), leading_forced=len(opening))
        return
    while True:
        t0 = _clock(backend)
        # A step feeds history[len(cache):] + draft, so the context must have room for all of it.
        room = min(max_new_tokens - produced - 1, backend.context_length - len(history) - 1)
        # Asked even when nothing fits (room 0), so drafters always observe what they proposed.
        draft, allowed = constraint.trim(drafter.propose(history, Budget(room, backend.latency)))
        t1 = _clock(backend)
        target_logits = strategy.forward(backend, pending, draft, cache)  # [1 + len(draft), vocab]
        t2 = _clock(backend)
        if len(pending) == 1:  # prefills would distort the per-size decode cost
            backend.latency.record(1 + len(draft), t2 - t1)
        target_logits = strategy.reshape(history, draft, constraint.apply(target_logits, allowed))
        result = verify(draft, target_logits, sampling, rng, position=len(history))
        if witness is not None:
            witness(draft, target_logits, result)
        cache.keep(len(cache) - len(draft), result.accepted)
        strategy.commit(draft, result)
        drafter.observe(draft, result, target_logits)
        tokens = _cut(result.tokens, backend.eos_token_ids, max_new_tokens - produced)
        forced = constraint.commit(tokens)
        forced = _cut(forced, backend.eos_token_ids,
                      min(max_new_tokens - produced - len(tokens), backend.context_length - len(history) - len(tokens)))
        history.extend(tokens + forced)
        produced += len(tokens) + len(forced)
        pending = (tokens + forced)[-1 - len(forced):]
        stop = _stop_reason(tokens + forced, backend, produced, max_new_tokens, len(history))
        yield Step(opening + tokens + forced, len(draft), result.num_accepted, t1 - t0, t2 - t1, time.perf_counter() - t2,
                   stop, forced=len(opening) + len(forced), leading_forced=len(opening))
        opening = []
        if stop is not None:
            return


def _clock(backend: Backend) -> float:
    """Read the clock once queued device work is done: a GPU forward returns at launch."""
    backend.synchronize()
    return time.perf_counter()


def _cut(tokens: list[int], eos_ids: set[int], budget: int) -> list[int]:
    """The committed tokens, ending at the first EOS and within the token budget."""
    tokens = tokens[:budget]
    for i, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[: i + 1]
    return tokens


def _stop_reason(tokens: list[int], backend: Backend, produced: int, max_new_tokens: int,
                 length: int) -> StopReason | None:
    if tokens[-1] in backend.eos_token_ids:
        return "eos"
    if produced >= max_new_tokens:
        return "length"
    if length >= backend.context_length:
        return "context"
    return None
