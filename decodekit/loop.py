"""The one decode loop. Every method is this generator with different parts plugged in.

Invariant between steps: the KV cache holds every committed token except the `pending` ones,
which are fed at the start of the next forward together with the draft. At the first step
`pending` is the whole prompt (so the prefill is just a step with a long pending part); after
that it is the single token the previous step produced::

    forward([*pending, *draft])  ->  logits for the last pending token and every draft node
    verify                       ->  accepted draft nodes + the model's own next token
    commit                       ->  cache keeps pending + accepted; the new token is pending
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from decodekit.budget import Budget
from decodekit.drafters.base import Drafter
from decodekit.models.hf import HFBackend
from decodekit.sampling import SamplingConfig
from decodekit.types import Step, VerifyResult
from decodekit.verify import Randomness, verify


def decode(
    backend: HFBackend,
    prompt_ids: list[int],
    drafter: Drafter,
    sampling: SamplingConfig,
    rng: Randomness,
    max_new_tokens: int,
) -> Iterator[Step]:
    """Yield one Step per verification until EOS, max_new_tokens or the context is full.

    The consumer may stop early (stop strings): closing the generator ends the loop.
    """
    cache = backend.new_cache()
    history = list(prompt_ids)
    pending = list(prompt_ids)
    produced = 0
    drafter.reset(prompt_ids)
    # A step feeds history[len(cache):] + draft, so the context must have room for all of it.
    while produced < max_new_tokens and len(history) < backend.context_length:
        t0 = time.perf_counter()
        room = min(max_new_tokens - produced - 1, backend.context_length - len(history))
        # Asked even when nothing fits (room 0), so drafters always observe what they proposed.
        draft = drafter.propose(history, Budget(room, backend.latency))
        t1 = time.perf_counter()
        target_logits = backend.forward(pending, draft, cache)  # [1 + len(draft), vocab]
        t2 = time.perf_counter()
        if len(pending) == 1:  # prefills would distort the per-size decode cost
            backend.latency.record(1 + len(draft), t2 - t1)
        result = verify(draft, target_logits, sampling, rng, position=len(history))
        cache.keep(len(cache) - len(draft), result.accepted)
        drafter.observe(draft, result, target_logits)
        tokens = _cut(result, backend.eos_token_ids, max_new_tokens - produced)
        history.extend(tokens)
        produced += len(tokens)
        pending = tokens[-1:]
        t3 = time.perf_counter()
        yield Step(tokens, len(draft), result.num_accepted, t1 - t0, t2 - t1, t3 - t2)
        if tokens[-1] in backend.eos_token_ids:
            return


def _cut(result: VerifyResult, eos_ids: set[int], budget: int) -> list[int]:
    """The committed tokens, ending at the first EOS and within the token budget."""
    tokens = result.tokens[:budget]
    for i, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[: i + 1]
    return tokens
