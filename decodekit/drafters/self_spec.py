"""Self-speculative decoding: the model drafts for itself with some of its layers skipped, and
verifies with all of them (Draft & Verify, Zhang et al., 2023). No second model, no extra
weights; the draft is a view of the target (models/hf/skip.py) with a KV cache of its own.

Which layers: Unified Layer Skipping's balanced rule (Liu et al., 2024) from a target speedup
ratio — keep num_layers / speedup layers, the first and the last always, the rest evenly
spread — or plain early exit (`exit_layer`: the first layers only). Everything else, the chain
drafting and its length rules, is the draft-model drafter's (draft_model.py).

`layer_skip_view` is also the lossy standalone method "layer-skip": decoding with the skipped
model alone, unverified (api.py), whose cost the benchmark reports as agreement with AR and
perplexity under the full model.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from decodekit.drafters.draft_model import DraftModelDrafter
from decodekit.errors import DecodekitError

if TYPE_CHECKING:
    from decodekit.backend import Backend


def check_skip_options(speedup: float, exit_layer: int) -> None:
    if not math.isfinite(speedup) or speedup < 1:
        raise DecodekitError(f"speedup must be a finite number >= 1 (the ratio of all layers to kept ones), got {speedup}")
    if exit_layer < 0:
        raise DecodekitError(f"exit_layer must be >= 1 (or 0: use speedup instead), got {exit_layer}")


def layer_skip_view(target: Backend, speedup: float, exit_layer: int = 0) -> Backend:
    """`target` running a subset of its layers: balanced for `speedup`, or the first
    `exit_layer` ones when that is set."""
    from decodekit.models.hf import HFBackend
    from decodekit.models.hf.layers import decoder_layers
    from decodekit.models.hf.skip import LayerSkipBackend, balanced_layers, early_exit_layers

    if not isinstance(target, HFBackend):
        backend = getattr(target, "kind", type(target).__name__)
        raise DecodekitError(f"layer skipping (self-spec, layer-skip) runs a subset of the model's layers, which "
                             f"needs the transformers backend (backend='hf'), not {backend}")
    num_layers = len(decoder_layers(target.model)[2])
    keep = early_exit_layers(num_layers, exit_layer) if exit_layer else balanced_layers(num_layers, speedup)
    return LayerSkipBackend(target, keep)


class SelfSpecDrafter(DraftModelDrafter):
    name = "self-spec"

    def __init__(self, speedup: float = 2.0, exit_layer: int = 0, max_draft: int = 12, stop: str = "cost",
                 threshold: float = 0.7):
        check_skip_options(speedup, exit_layer)
        self.speedup, self.exit_layer = speedup, exit_layer
        super().__init__(max_draft=max_draft, stop=stop, threshold=threshold)

    def check_draft_option(self) -> None:
        pass  # the draft is the target itself, attached later

    def make_second_model(self, target: Backend) -> Backend:
        return layer_skip_view(target, self.speedup, self.exit_layer)


class LayerSkipMethod:
    """The lossy method "layer-skip": decode with the skipped model alone, nothing verified."""

    name = "layer-skip"

    def __init__(self, speedup: float = 2.0, exit_layer: int = 0):
        check_skip_options(speedup, exit_layer)
        self.speedup, self.exit_layer = speedup, exit_layer

    def backend(self, target: Backend) -> Backend:
        return layer_skip_view(target, self.speedup, self.exit_layer)
