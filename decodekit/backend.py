"""What the loop, the drafters, the benchmark and calibration need from a model: the Backend
protocol. Hugging Face transformers (models/hf) and llama.cpp (models/llamacpp) implement it; a
draft model runs on the target's kind of backend. Nothing outside a backend's own package imports
its model library.

The cache protocol is the rollback contract of speculative decoding: a forward appends the
keys and values of every input token, and after verification only the accepted ones stay.
"""

from __future__ import annotations

from typing import Protocol

import torch

from decodekit.budget import LatencyCurve
from decodekit.types import Draft


class KVCache(Protocol):
    """A backend's per-sequence state: one entry per position fed so far."""

    def __len__(self) -> int:
        """Positions held."""
        ...

    def crop(self, length: int) -> None:
        """Keep the first `length` positions."""
        ...

    def keep(self, start: int, offsets: list[int]) -> None:
        """Keep positions [0, start) and then start + offsets (ascending), dropping the rest:
        a chain's accepted prefix is a crop, a tree's accepted path is gathered and compacted."""
        ...


class Backend(Protocol):
    """A loaded model with its tokenizer, as the decode loop drives it."""

    name: str
    kind: str  # which implementation drives it: "hf" (transformers) or "llama.cpp"
    context_length: int  # positions the model can attend over (prompt + output)
    vocab_size: int  # token ids are in [0, vocab_size)
    eos_token_ids: set[int]
    latency: LatencyCurve  # forward cost by number of input tokens on this machine (budget.py)

    @property
    def identity(self) -> str:
        """What a forward's cost depends on besides the CPU: model, dtype, device, threads.
        Keys the calibrated cost curve."""
        ...

    @property
    def dtype_name(self) -> str:
        """'fp32', 'bf16', 'fp16' or 'q8' (8-bit quantized activations): the numerics class that
        sets the benchmark's tie tolerance."""
        ...

    def new_cache(self) -> KVCache: ...

    def forward(self, pending: list[int], draft: Draft, cache: KVCache) -> torch.Tensor:
        """Run [pending + draft] on top of `cache` (a chain, or a tree by `draft.parents`) and
        return logits [1 + len(draft), vocab]: row 0 predicts what follows the last pending
        token, row 1 + i what follows draft node i. Every input token is appended to `cache`;
        the caller commits with `cache.keep`."""
        ...

    def synchronize(self) -> None:
        """Wait for queued device work. Timings call it before reading the clock: on a GPU a
        forward returns when its kernels are launched, not when they finish."""
        ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`, special tokens left out."""
        ...

    @property
    def has_chat_template(self) -> bool: ...

    def apply_chat_template(self, messages: list[dict]) -> list[int]: ...

    # Optional: grammars (constraints/) need `grammar_tokenizer() -> llguidance.LLTokenizer`,
    # the vocabulary as llguidance maps it; a backend without it gets a clear error there.
    # Optional: strategies that contrast layers (DoLa, LOL) need `num_layers` and
    # `forward_layers(pending, draft, cache, layers, norm) -> (logits, {layer: logits})`, the
    # same rows read at lower layers through the LM head (models/hf/backend.py); a backend
    # without them is refused by the strategy with a message naming the backend.
