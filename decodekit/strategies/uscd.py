"""USCD, uncertainty-aware selective contrastive decoding (Wang et al., 2024, for code
generation): where the model is unsure, subtract what it would predict from a "lame" prompt —
the same prompt with its input-output examples dropped, which mostly carries the noise.

As the authors' code (alphadl/CodeGen-USCD) computes it, per row, with p the standard
prompt's distribution and q the lame prompt's:

    uncertain  ⇔  std(p) ≤ threshold        (a flat distribution: 0.005 in their runs)
    uncertain:     score(x) = log(p(x) − λ q(x))   for p(x) ≥ filter · mean(p) and p(x) > λ q(x)
                            = −inf                  elsewhere        (λ = 0.7, filter = 2/3)
    otherwise:     score(x) = log p(x)

mean(p) is 1 / vocabulary, so the filter drops only the far tail. The lame prompt is
`lame_prompt` (raw text, encoded as is), or the prompt with its doctest examples (lines from
`>>>` up to the next blank or `>>>` line) taken out token by token.

The lame prompt runs as a second sequence on the same model (strategies/shadow.py), fed the same
tokens as the standard one after the prompt, so each row is exact under any drafter. It needs a
backend that holds two caches at once (transformers; a llama.cpp context holds one).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import torch

from decodekit.errors import DecodekitError
from decodekit.sampling import SamplingConfig
from decodekit.strategies.base import Strategy
from decodekit.strategies.contrastive import check_unit
from decodekit.strategies.shadow import Shadow
from decodekit.types import Draft, VerifyResult

if TYPE_CHECKING:
    from decodekit.backend import Backend, KVCache

_EXAMPLE_START = re.compile(r"^\s*>>>")


class Uscd(Strategy):
    name = "uscd"

    def __init__(self, lame_prompt: str = "", weight: float = 0.7, threshold: float = 0.005,
                 filter: float = 2 / 3):
        check_unit(weight, "uscd: weight (λ, how much of the lame prompt's distribution to subtract)")
        check_unit(threshold, "uscd: threshold (the std of the distribution at or below which it is uncertain)")
        if not (isinstance(filter, (int, float)) and math.isfinite(filter) and filter >= 0):
            raise DecodekitError(f"uscd: filter must be >= 0, got {filter!r}")
        if not isinstance(lame_prompt, str):
            raise DecodekitError(f"uscd: lame_prompt must be text, got {lame_prompt!r}")
        self.lame_text, self.weight, self.threshold, self.filter = lame_prompt, float(weight), float(threshold), float(filter)
        self.backend: Backend | None = None
        self.lame: Shadow | None = None
        self._lame_logits = torch.empty(0)

    def attach(self, backend: Backend) -> None:
        if backend.kind != "hf":
            raise DecodekitError(f"uscd runs a second prompt beside the first on one model, which needs two caches "
                                 f"at once: use the transformers backend (backend='hf'), not {backend.kind}")
        self.backend, self.lame = backend, Shadow(backend)

    def start(self, prompt_ids: list[int], sampling: SamplingConfig) -> None:
        assert self.backend is not None and self.lame is not None, "attach() first"
        lame = self.backend.encode(self.lame_text) if self.lame_text else drop_examples(prompt_ids, self.backend)
        if not lame:
            raise DecodekitError("uscd: the lame prompt is empty: pass lame_prompt= (the prompt without its examples)")
        self.lame.start(lame, len(prompt_ids))

    def forward(self, backend: Backend, pending: list[int], draft: Draft, cache: KVCache) -> torch.Tensor:
        assert self.lame is not None
        self._lame_logits = self.lame.forward(pending, draft)
        return backend.forward(pending, draft, cache)

    def reshape(self, history: list[int], draft: Draft, logits: torch.Tensor) -> torch.Tensor:
        return selective_contrast(logits, self._lame_logits.to(logits.device), self.weight, self.threshold, self.filter)

    def commit(self, draft: Draft, result: VerifyResult) -> None:
        assert self.lame is not None
        self.lame.commit(draft, result)


def selective_contrast(standard: torch.Tensor, lame: torch.Tensor, weight: float, threshold: float,
                       filter: float) -> torch.Tensor:
    """USCD's scores [rows, vocab] from the standard and lame prompts' logits."""
    p = torch.softmax(standard.float(), -1)
    q = torch.softmax(lame.float(), -1)
    plain = torch.log_softmax(standard.float(), -1)
    uncertain = p.std(-1, keepdim=True) <= threshold
    difference = p - weight * q
    keep = (p >= filter * p.mean(-1, keepdim=True)) & (difference > 0)
    contrasted = torch.where(keep, difference.clamp_min(1e-30).log(), torch.tensor(-math.inf))
    # A row whose contrast leaves nothing (possible only under a grammar mask) keeps the model's own.
    usable = uncertain & keep.any(-1, keepdim=True)
    return torch.where(usable, contrasted, plain)


def drop_examples(prompt_ids: list[int], backend: Backend) -> list[int]:
    """The prompt without its doctest examples: tokens that start on a `>>>` line or on the
    output lines after it (until a blank line or the next `>>>`), found on each token's text."""
    pieces = [backend.decode([token]) for token in prompt_ids]
    text = "".join(pieces)
    dropped = _example_spans(text)
    kept, offset = [], 0
    for token, piece in zip(prompt_ids, pieces, strict=True):
        if not any(start <= offset < end for start, end in dropped) or not piece:
            kept.append(token)
        offset += len(piece)
    return kept


def _example_spans(text: str) -> list[tuple[int, int]]:
    spans, offset, inside = [], 0, False
    for line in text.splitlines(keepends=True):
        if _EXAMPLE_START.match(line):
            inside = True
        elif not line.strip() or '"""' in line or "'''" in line:
            inside = False
        if inside:
            spans.append((offset, offset + len(line)))
        offset += len(line)
    return spans
