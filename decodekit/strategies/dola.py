"""DoLa, decoding by contrasting layers (Chuang et al., 2024): facts that the final layer knows
and lower layers do not yet are promoted.

For each row, among the candidate (premature) layers, the one whose next-token distribution is
furthest from the final layer's by Jensen-Shannon divergence is the contrast:

    score = log p_final − log p_premature    over {x : p_final(x) ≥ relative_top · max p_final}
          = −inf                              elsewhere

(the excluded tokens of the premature layer get −1e-3, which never matters: their score is
−inf). Then the repetition penalty (1.2 by default, the paper's advice for open-ended text:
DoLa alone tends to repeat itself) applies to the scores along each draft path.

Candidate layers follow transformers 4.x's buckets (the last release with DoLa in the library):
with N decoder layers, "low" is range(s, N // 2, 2) and "high" range(N // 2, N, 2), or for
N > 40 range(s, 20, 2) and range(N − 20, N, 2); s skips the embedding layer (0) when the
embeddings are tied to the output head, whose early exit would just echo the input token. A
list names the layers itself (0 = the embeddings' output, i = decoder layer i's output).

A lower layer is read straight through the LM head, as both the paper's code and transformers
4.x read it (an open question there, voidism/DoLa#9, found that adding the final norm lowered
GSM8K accuracy); `norm=True` puts the final norm first.

Rows are independent given their text, so DoLa is exact under any drafter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from decodekit.errors import DecodekitError
from decodekit.strategies.base import Strategy
from decodekit.strategies.contrastive import check_unit
from decodekit.strategies.penalty import penalise_repeats
from decodekit.types import Draft

if TYPE_CHECKING:
    from decodekit.backend import Backend, KVCache

BASE_FILTER_VALUE = -1e-3  # what a filtered token's premature log-probability becomes (transformers 4.x)


class DoLa(Strategy):
    name = "dola"

    def __init__(self, dola_layers: str | int | Sequence[int] | None = None, relative_top: float = 0.1,
                 repetition_penalty: float = 1.2, norm: bool = False):
        """`dola_layers`: "low", "high" (the default) or a list of layer indices."""
        self.layers_option = parse_layers(dola_layers)
        check_unit(relative_top, "dola: relative_top")
        check_penalty(repetition_penalty, "dola")
        self.relative_top, self.repetition_penalty, self.norm = float(relative_top), float(repetition_penalty), norm
        self.candidates: list[int] = []
        self._final = torch.empty(0)
        self._premature: dict[int, torch.Tensor] = {}

    def attach(self, backend: Backend) -> None:
        if not hasattr(backend, "forward_layers"):
            raise DecodekitError(f"{self.name} reads the model's lower layers, which the {backend.kind} backend does "
                                 "not expose: use the transformers backend (backend='hf')")
        num_layers: int = backend.num_layers  # type: ignore[attr-defined]
        self.candidates = candidate_layers(self.layers_option, num_layers, tied_embeddings(backend), self.name)

    def forward(self, backend: Backend, pending: list[int], draft: Draft, cache: KVCache) -> torch.Tensor:
        logits, self._premature = backend.forward_layers(  # type: ignore[attr-defined]
            pending, draft, cache, self.candidates, self.norm)
        self._final = logits  # before any grammar mask: the layer choice reads the model itself
        return logits

    def reshape(self, history: list[int], draft: Draft, logits: torch.Tensor) -> torch.Tensor:
        premature = chosen_premature(self._final, self._premature, self.candidates)
        scores = relative_top_contrast(logits, premature, self.relative_top)
        return penalise_repeats(scores, history, draft, self.repetition_penalty)

    def describe(self) -> str:
        return f"{self.name} (layers {self.candidates or self.layers_option})"


def chosen_premature(final: torch.Tensor, premature: dict[int, torch.Tensor], candidates: list[int]) -> torch.Tensor:
    """Per row, the logits of the candidate layer furthest from the final layer by
    Jensen-Shannon divergence (the first such layer on ties): [rows, vocab]."""
    if len(candidates) == 1:
        return premature[candidates[0]].float()
    stacked = torch.stack([premature[layer].float() for layer in candidates])  # [layers, rows, vocab]
    js = jensen_shannon(final.float().unsqueeze(0), stacked)  # [layers, rows]
    best = js.argmax(0)  # [rows]
    return stacked[best, torch.arange(stacked.shape[1])]


def jensen_shannon(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """JS divergence of softmax(a) and softmax(b) along the last axis, averaged over the
    vocabulary as transformers 4.x computes it (a constant factor: the argmax is the same)."""
    log_a, log_b = torch.log_softmax(a, -1), torch.log_softmax(b, -1)
    mean = 0.5 * (log_a.exp() + log_b.exp())
    kl_a = torch.nn.functional.kl_div(log_a, mean, reduction="none").mean(-1)
    kl_b = torch.nn.functional.kl_div(log_b, mean, reduction="none").mean(-1)
    return 0.5 * (kl_a + kl_b)


def relative_top_contrast(final: torch.Tensor, premature: torch.Tensor, relative_top: float) -> torch.Tensor:
    """log p_final − log p_premature over the tokens within `relative_top` of the final top
    probability (at least the top one); −inf elsewhere."""
    log_final = torch.log_softmax(final.float(), -1)
    log_premature = torch.log_softmax(premature.float().to(final.device), -1)
    top = log_final.amax(-1, keepdim=True)
    threshold = top + (math.log(relative_top) if relative_top > 0 else -math.inf)
    threshold = torch.minimum(threshold, top)  # keeps the top token even at relative_top 1
    dropped = log_final < threshold
    log_premature = log_premature.masked_fill(dropped, BASE_FILTER_VALUE)
    return log_final.masked_fill(dropped, -math.inf) - log_premature


def parse_layers(value: str | int | Sequence[int] | None) -> str | list[int]:
    """"low", "high" or layer indices, from the API (a list) or a command line ("2,4" or "2 4")."""
    if value is None:
        return "high"
    if isinstance(value, int) and not isinstance(value, bool):  # one layer, as a command line's [dola_layers=4] reads
        return [value]
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("low", "high"):
            return text
        parts = text.replace(",", " ").replace(";", " ").split()
        if parts and all(p.isdigit() for p in parts):
            return [int(p) for p in parts]
        raise DecodekitError(f"dola_layers must be 'low', 'high' or a list of layer indices such as [2, 4], got {value!r}")
    if isinstance(value, Sequence) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [int(v) for v in value]
    raise DecodekitError(f"dola_layers must be 'low', 'high' or a non-empty list of layer indices, got {value!r}")


def candidate_layers(option: str | list[int], num_layers: int, tied: bool, method: str) -> list[int]:
    """The premature layers to choose among, transformers 4.x's buckets for "low" and "high"."""
    if isinstance(option, list):
        bad = [layer for layer in option if not 0 <= layer < num_layers]
        if bad:
            raise DecodekitError(f"{method}: layer {bad[0]} is out of range: this model has {num_layers} decoder "
                                 f"layers, so premature layers are 0 (the embeddings) to {num_layers - 1}")
        return list(dict.fromkeys(option))
    start = (2 if num_layers > 2 else 1 if num_layers == 2 else 0) if tied else 0
    half = num_layers // 2
    if option == "low":
        if start == half:
            return [start]
        layers = range(start, half, 2) if num_layers <= 40 else range(start, 20, 2)
    else:
        layers = range(half, num_layers, 2) if num_layers <= 40 else range(num_layers - 20, num_layers, 2)
    if not layers:
        raise DecodekitError(f"{method}: no '{option}' layers to contrast with in a {num_layers}-layer model; "
                             "name them with a list")
    return list(layers)


def tied_embeddings(backend: Backend) -> bool:
    model = getattr(backend, "model", None)
    config = getattr(model, "config", None)
    return bool(getattr(config, "tie_word_embeddings", False))


def check_penalty(value: object, method: str) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise DecodekitError(f"{method}: repetition_penalty must be > 0 (1.0 = off), got {value!r}")
