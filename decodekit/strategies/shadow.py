"""A second sequence kept in step with the target's: a second model on the same prompt
(contrastive decoding's amateur) or the target on a second prompt (USCD's lame prompt).

It is fed exactly what the target is fed — the same pending tokens and the same draft, as a
chain or a tree — so its row r predicts after the same text as the target's row r, and after
verification it keeps the same accepted nodes. Only the prompt may differ: the first step feeds
its own prompt in place of the target's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from decodekit.types import Draft, VerifyResult

if TYPE_CHECKING:
    from decodekit.backend import Backend, KVCache


class Shadow:
    def __init__(self, backend: Backend):
        self.backend = backend
        self.cache: KVCache | None = None
        self._prompt: list[int] = []
        self._skip = 0  # target prompt tokens the first step replaces with `_prompt`

    def start(self, prompt_ids: list[int], target_prompt_length: int) -> None:
        """Follow a generation whose target prompt has `target_prompt_length` tokens, from
        this sequence's own `prompt_ids` (the same ids for an amateur)."""
        self.cache = self.backend.new_cache()
        self._prompt, self._skip = list(prompt_ids), target_prompt_length

    def forward(self, pending: list[int], draft: Draft) -> torch.Tensor:
        """Logits [1 + len(draft), vocab] for the target's step over `pending` + `draft`."""
        assert self.cache is not None, "start() first"
        return self.backend.forward(self._own(pending), draft, self.cache)

    def forward_layers(self, pending: list[int], draft: Draft, layers: list[int],
                       norm: bool) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """`forward`, plus the rows read at lower layers (the backend's `forward_layers`)."""
        assert self.cache is not None, "start() first"
        return self.backend.forward_layers(self._own(pending), draft, self.cache, layers, norm)  # type: ignore[attr-defined]

    def _own(self, pending: list[int]) -> list[int]:
        if self._skip:
            pending = self._prompt + pending[self._skip:]
            self._skip = 0
        return pending

    def commit(self, draft: Draft, result: VerifyResult) -> None:
        assert self.cache is not None
        self.cache.keep(len(self.cache) - len(draft), result.accepted)
