"""Layer skipping: the model drafting for itself with a subset of its own decoder layers.

Self-speculative decoding (Draft & Verify, Zhang et al. 2023; Unified Layer Skipping, Liu et
al. 2024) drafts with some of the model's layers and verifies with all of them: no second model,
no extra weights. `LayerSkipBackend` is that draft model, a Backend view of an `HFBackend` that
runs only the kept layers; the final norm and the LM head still apply.

How: for the length of one forward, `skipping_layers` puts a ModuleList holding only the kept
layers (the original objects) where the model keeps its decoder layers, then puts the original
back. Nothing of the model is patched, and no weight is copied. A kept layer keeps its
`layer_idx`, so it reads and writes its own slot of the cache; the skipped layers' slots stay
uninitialised. The cache's length is read from slot 0, so layer 0 is always kept.

Architectures that give layers different attention (Gemma 3's sliding and full layers, Qwen 2's
optional sliding layers) look up each layer's kind in `config.layer_types` by its position in
the list; that list is shortened to the kept layers' kinds for the same span, so each kept layer
still gets its own mask and rotary embedding.

Not thread-safe, and not re-entrant: while a view's forward runs, the shared model object has
fewer layers, so the full model (or a second view) must not run on another thread at that time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from decodekit.backend import KVCache
from decodekit.budget import LatencyCurve
from decodekit.errors import DecodekitError
from decodekit.models.hf.backend import HFBackend
from decodekit.models.hf.cache import HFCache
from decodekit.models.hf.layers import decoder_layers, text_config
from decodekit.types import Draft


@contextmanager
def skipping_layers(model: torch.nn.Module, keep: Sequence[int]) -> Iterator[None]:
    """Within the block, `model` runs only the decoder layers in `keep` (ascending, layer 0
    among them); on leaving it, by an exception too, it has all its layers again.

    Not thread-safe, not re-entrant: the model object itself is changed for the block's span.
    """
    with _LayerSwap(model, keep).applied():
        yield


class _LayerSwap:
    """What `skipping_layers` swaps, found and built once: a view swaps at every forward, and
    finding the layer list walks every module of the model (about 1 ms for 30 layers)."""

    def __init__(self, model: torch.nn.Module, keep: Sequence[int]):
        self.owner, self.attribute, self.layers = decoder_layers(model)
        self.kept = _check_keep(keep, len(self.layers))
        self.kept_modules = torch.nn.ModuleList([self.layers[i] for i in self.kept])
        self.config: Any = getattr(self.owner, "config", None) or text_config(model)
        # Per-layer kinds are looked up by position in the list the model iterates: shorten them
        # alike, or a kept layer would get the mask and rotary embedding of the layer before it.
        layer_types = getattr(self.config, "layer_types", None)
        self.layer_types = layer_types if isinstance(layer_types, list) and len(layer_types) == len(self.layers) else None
        self.kept_types = None if self.layer_types is None else [self.layer_types[i] for i in self.kept]

    @contextmanager
    def applied(self) -> Iterator[None]:
        if getattr(self.owner, self.attribute) is not self.layers:
            raise DecodekitError(
                "the model's decoder layers are not the ones this layer skipping was set up for"
                " (layer skipping nested, or run from two threads at once?)"
            )
        setattr(self.owner, self.attribute, self.kept_modules)
        try:
            if self.kept_types is not None:
                self.config.layer_types = self.kept_types
            yield
        finally:
            setattr(self.owner, self.attribute, self.layers)
            if self.layer_types is not None:
                self.config.layer_types = self.layer_types


def _check_keep(keep: Sequence[int], num_layers: int) -> list[int]:
    kept = list(keep)
    if not kept or any(isinstance(i, bool) or not isinstance(i, int) for i in kept):
        raise DecodekitError(f"layers to keep must be a non-empty list of layer indices, got {keep!r}")
    if kept != sorted(set(kept)):
        raise DecodekitError(f"layers to keep must be ascending without repeats, got {kept}")
    if kept[0] != 0 or kept[-1] >= num_layers:
        raise DecodekitError(
            f"layers to keep must lie in [0, {num_layers}) and include layer 0 (the cache's length is read from it), got {kept}"
        )
    return kept


def balanced_layers(num_layers: int, speedup: float) -> list[int]:
    """The layers Unified Layer Skipping keeps for a target speedup `r` (Liu et al. 2024).

    Rule: keep k = round(num_layers / r) layers (rounded half up), at least 2; the first and
    the last layer are always kept, and the k kept layers are spread evenly, layer i of k being
    round(i * (num_layers - 1) / (k - 1)) (half up). So the skipped layers are spread evenly
    over the middle, never a contiguous block at the bottom or the top.

    >>> balanced_layers(8, 2.0)
    [0, 2, 5, 7]
    >>> balanced_layers(30, 3.0)
    [0, 3, 6, 10, 13, 16, 19, 23, 26, 29]
    """
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 2:
        raise DecodekitError(f"balanced layer skipping needs a model of at least 2 layers, got {num_layers!r}")
    if not isinstance(speedup, int | float) or not math.isfinite(speedup) or speedup < 1:
        raise DecodekitError(f"the target speedup of layer skipping must be a finite number >= 1, got {speedup!r}")
    k = math.floor(num_layers / speedup + 0.5)
    if k < 2:
        raise DecodekitError(
            f"a speedup of {speedup:g} keeps fewer than 2 of {num_layers} layers (the first and the last are always kept):"
            f" use at most {num_layers / 1.5:.4g}"
        )
    # floor(i * (n - 1) / (k - 1) + 1/2) in integers: exact, and strictly increasing as k <= n.
    return [(2 * i * (num_layers - 1) + (k - 1)) // (2 * (k - 1)) for i in range(k)]


def early_exit_layers(num_layers: int, exit_layer: int) -> list[int]:
    """The first `exit_layer` layers: plain early exit (the final norm and LM head still apply).

    >>> early_exit_layers(8, 3)
    [0, 1, 2]
    """
    if isinstance(exit_layer, bool) or not isinstance(exit_layer, int) or not 1 <= exit_layer <= num_layers:
        raise DecodekitError(f"the early-exit layer must be an integer in [1, {num_layers}], got {exit_layer!r}")
    return list(range(exit_layer))


class LayerSkipCache(HFCache):
    """An HFCache that remembers which layers filled it: a view's forward takes only its own."""

    def __init__(self, kept_layers: tuple[int, ...]):
        super().__init__()
        self.kept_layers = kept_layers


@dataclass
class LayerSkipBackend:
    """`full` running only the decoder layers in `keep`: a Backend (backend.py) for drafting.

    It shares the model, tokenizer and everything a Backend reports with `full`, but has caches
    of its own (they hold only the kept layers' keys and values) and a latency curve of its own
    (its forwards are cheaper), keyed by an identity of its own. Not thread-safe: see the module
    docstring.
    """

    kind = "hf"
    full: HFBackend
    keep: list[int]
    latency: LatencyCurve = field(default_factory=LatencyCurve)
    name: str = field(init=False)
    context_length: int = field(init=False)
    vocab_size: int = field(init=False)
    eos_token_ids: set[int] = field(init=False)

    def __post_init__(self):
        self._swap = _LayerSwap(self.full.model, self.keep)
        self.num_layers: int = len(self._swap.layers)
        self.keep = list(self._swap.kept)
        self.name = self.full.name
        self.context_length = self.full.context_length
        self.vocab_size = self.full.vocab_size
        self.eos_token_ids = self.full.eos_token_ids  # the same set: never out of step

    @property
    def kept_layers(self) -> tuple[int, ...]:
        return tuple(self._swap.kept)  # fixed at construction, whatever is done to `keep` later

    @property
    def identity(self) -> str:
        return f"{self.full.identity} keeping {len(self.kept_layers)} of {self.num_layers} layers"

    @property
    def dtype_name(self) -> str:
        return self.full.dtype_name

    @property
    def device(self) -> torch.device:
        return self.full.device

    def new_cache(self) -> LayerSkipCache:
        return LayerSkipCache(self.kept_layers)

    def forward(self, pending: list[int], draft: Draft, cache: KVCache) -> torch.Tensor:
        """The full backend's forward (backend.py) through the kept layers only."""
        if not isinstance(cache, LayerSkipCache) or cache.kept_layers != self.kept_layers:
            raise TypeError(
                f"a layer-skipping view needs a cache of its own (new_cache()), got {type(cache).__name__}"
                + (f" for layers {list(cache.kept_layers)}" if isinstance(cache, LayerSkipCache) else "")
            )
        with self._swap.applied():
            return self.full.forward(pending, draft, cache)

    def synchronize(self) -> None:
        self.full.synchronize()

    def encode(self, text: str) -> list[int]:
        return self.full.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.full.decode(ids)

    @property
    def has_chat_template(self) -> bool:
        return self.full.has_chat_template

    def apply_chat_template(self, messages: list[dict]) -> list[int]:
        return self.full.apply_chat_template(messages)

    def grammar_tokenizer(self):
        return self.full.grammar_tokenizer()


if TYPE_CHECKING:
    from decodekit.backend import Backend

    _conforms: type[Backend] = LayerSkipBackend  # mypy checks LayerSkipBackend against the protocol here
