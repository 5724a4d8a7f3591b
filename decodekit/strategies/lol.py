"""LOL, multi-layer fusion contrastive decoding (Chen et al., 2024, "Lower Layer Matters"):
contrastive decoding between an expert and an amateur at the final layer and at a lower layer
read out early, fused into one score.

    score = [log p_e − log p_a](final) + ω · [log p_e − log p_a](lower)
            over {x : p_e,final(x) ≥ α · max p_e,final},  −inf elsewhere

The lower layer is read straight through each model's LM head, as DoLa reads it
(strategies/dola.py); the amateur's lower layer sits at the same relative depth as the
expert's unless `amateur_layer` names it.

What is the paper's and what is not: the paper contrasts the original model with an amateur
(an "induced hallucination" model, as in ICD, Zhang et al. 2023) at the final layer and at a
lower layer, and fuses the two; its text was not reachable from this workspace and its code is
unreleased, so the fusion weight ω (1.0: a plain sum), the default lower layer (the middle one)
and the plausibility cut (α = 0.1, contrastive decoding's) are this implementation's choices.
The paper's "truthfulness refocused" module is a prompt-side instruction, left to the user.

Rows are independent given their text (the amateur is fed the same tokens), so LOL is exact
under any drafter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from decodekit.errors import DecodekitError
from decodekit.sampling import SamplingConfig
from decodekit.strategies.base import Strategy
from decodekit.strategies.contrastive import check_unit, load_amateur
from decodekit.strategies.shadow import Shadow
from decodekit.types import Draft, VerifyResult

if TYPE_CHECKING:
    from decodekit.backend import Backend, KVCache


class Lol(Strategy):
    name = "lol"

    def __init__(self, amateur: str = "", layer: int = -1, amateur_layer: int = -1, fusion_weight: float = 1.0,
                 alpha: float = 0.1):
        """`layer`: the expert's lower layer (-1: the middle one); `amateur_layer`: the
        amateur's (-1: the same relative depth)."""
        check_unit(alpha, "lol: alpha (the plausibility cut)")
        if not (isinstance(fusion_weight, (int, float)) and math.isfinite(fusion_weight) and fusion_weight >= 0):
            raise DecodekitError(f"lol: fusion_weight must be >= 0, got {fusion_weight!r}")
        self.amateur_name, self.alpha, self.fusion_weight = amateur, float(alpha), float(fusion_weight)
        self.layer_option, self.amateur_layer_option = layer, amateur_layer
        self.layer = self.amateur_layer = 0
        self.amateur: Shadow | None = None
        self._expert_lower = self._amateur_final = self._amateur_lower = torch.empty(0)

    def attach(self, backend: Backend, amateur: Backend | None = None) -> None:
        amateur = load_amateur(self.name, self.amateur_name, backend, amateur)
        for model in (backend, amateur):
            if not hasattr(model, "forward_layers"):
                raise DecodekitError(f"lol reads lower layers, which the {model.kind} backend does not expose: "
                                     "use the transformers backend (backend='hf')")
        expert_layers: int = backend.num_layers  # type: ignore[attr-defined]
        amateur_layers: int = amateur.num_layers  # type: ignore[attr-defined]
        self.layer = expert_layers // 2 if self.layer_option == -1 else self.layer_option
        self.amateur_layer = (round(self.layer * amateur_layers / expert_layers) if self.amateur_layer_option == -1
                              else self.amateur_layer_option)
        for which, layer, count in (("layer", self.layer, expert_layers), ("amateur_layer", self.amateur_layer, amateur_layers)):
            if not 0 <= layer < count:
                raise DecodekitError(f"lol: {which} {layer} is out of range: that model has {count} decoder layers "
                                     f"(0 = the embeddings to {count - 1}, or -1 for the default)")
        self.amateur = Shadow(amateur)

    def start(self, prompt_ids: list[int], sampling: SamplingConfig) -> None:
        assert self.amateur is not None, "attach() first"
        self.amateur.start(prompt_ids, len(prompt_ids))

    def forward(self, backend: Backend, pending: list[int], draft: Draft, cache: KVCache) -> torch.Tensor:
        assert self.amateur is not None
        self._amateur_final, amateur_lower = self.amateur.forward_layers(pending, draft, [self.amateur_layer], False)
        logits, expert_lower = backend.forward_layers(pending, draft, cache, [self.layer], False)  # type: ignore[attr-defined]
        self._expert_lower, self._amateur_lower = expert_lower[self.layer], amateur_lower[self.amateur_layer]
        return logits

    def reshape(self, history: list[int], draft: Draft, logits: torch.Tensor) -> torch.Tensor:
        vocab = logits.shape[-1]
        return fused_contrast(logits, self._amateur_final[:, :vocab], self._expert_lower,
                              self._amateur_lower[:, :vocab], self.fusion_weight, self.alpha)

    def commit(self, draft: Draft, result: VerifyResult) -> None:
        assert self.amateur is not None
        self.amateur.commit(draft, result)

    def tie_scores(self, history: list[int], logits: torch.Tensor,
                   tolerance_of: Callable[[torch.Tensor], float]) -> tuple[torch.Tensor, float]:
        """As contrastive decoding's (strategies/contrastive.py), with the lower layers' gaps
        added at ω times their tolerance."""
        vocab = logits.shape[-1]
        rows = [logits[0], self._amateur_final[0, :vocab], self._expert_lower[0], self._amateur_lower[0, :vocab]]
        slack = tolerance_of(rows[0])
        tolerance = slack + tolerance_of(rows[1]) + self.fusion_weight * (tolerance_of(rows[2]) + tolerance_of(rows[3]))
        expert, amateur, expert_lower, amateur_lower = (row[None] for row in rows)
        scores = fused_contrast(expert, amateur, expert_lower, amateur_lower, self.fusion_weight,
                                self.alpha * math.exp(-slack))
        return scores[0], tolerance


def fused_contrast(expert: torch.Tensor, amateur: torch.Tensor, expert_lower: torch.Tensor,
                   amateur_lower: torch.Tensor, weight: float, alpha: float) -> torch.Tensor:
    """LOL's scores [rows, vocab]: the final-layer contrast plus `weight` times the lower-layer
    one, over the expert's plausible tokens."""
    def log_p(logits: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(logits.float().to(expert.device), -1)

    log_expert = log_p(expert)
    score = log_expert - log_p(amateur) + weight * (log_p(expert_lower) - log_p(amateur_lower))
    plausible = log_expert >= log_expert.amax(-1, keepdim=True) + (math.log(alpha) if alpha > 0 else -math.inf)
    return torch.where(plausible, score, torch.tensor(-math.inf))
