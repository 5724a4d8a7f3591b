"""Contrastive decoding (Li et al., 2023): prefer what a strong model (the expert) expects and
a weak one (the amateur) does not.

    score(x) = log p_expert(x) − log p_amateur(x)   for x with p_expert(x) ≥ α · max p_expert
             = −inf                                otherwise (the plausibility constraint)

α = 0.1 as in the paper. The amateur's temperature (Li et al. tune it; 1.0 leaves it as it is)
divides its logits before the softmax. Greedy decoding takes the argmax of the score; sampling
samples softmax(score / temperature).

The amateur is a second model with the expert's tokenizer, on the same kind of backend, fed the
same tokens every step (strategies/shadow.py): its row r predicts after the same text as the
expert's, so the score is exact under any drafter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from decodekit.errors import DecodekitError
from decodekit.sampling import SamplingConfig
from decodekit.strategies.base import Strategy
from decodekit.strategies.shadow import Shadow
from decodekit.types import Draft, VerifyResult

if TYPE_CHECKING:
    from decodekit.backend import Backend, KVCache


class ContrastiveDecoding(Strategy):
    name = "contrastive-decoding"

    def __init__(self, amateur: str = "", alpha: float = 0.1, amateur_temperature: float = 1.0):
        if not isinstance(amateur, str):
            raise DecodekitError(f"contrastive-decoding: amateur must be a model name, got {amateur!r}")
        check_unit(alpha, "contrastive-decoding: alpha (the plausibility cut, a fraction of the top probability)")
        if not (isinstance(amateur_temperature, (int, float)) and math.isfinite(amateur_temperature)
                and amateur_temperature > 0):
            raise DecodekitError(f"contrastive-decoding: amateur_temperature must be > 0, got {amateur_temperature!r}")
        self.amateur_name, self.alpha, self.amateur_temperature = amateur, float(alpha), float(amateur_temperature)
        self.amateur: Shadow | None = None
        self._amateur_logits = torch.empty(0)

    def attach(self, backend: Backend, amateur: Backend | None = None) -> None:
        """Load the amateur (by name, on the expert's kind of backend) unless one is given."""
        self.amateur = Shadow(load_amateur(self.name, self.amateur_name, backend, amateur))

    def start(self, prompt_ids: list[int], sampling: SamplingConfig) -> None:
        assert self.amateur is not None, "attach() first"
        self.amateur.start(prompt_ids, len(prompt_ids))

    def forward(self, backend: Backend, pending: list[int], draft: Draft, cache: KVCache) -> torch.Tensor:
        assert self.amateur is not None
        self._amateur_logits = self.amateur.forward(pending, draft)
        return backend.forward(pending, draft, cache)

    def reshape(self, history: list[int], draft: Draft, logits: torch.Tensor) -> torch.Tensor:
        amateur = self._amateur_logits[:, : logits.shape[-1]].to(logits.device)
        return contrast(logits, amateur, self.alpha, self.amateur_temperature)

    def commit(self, draft: Draft, result: VerifyResult) -> None:
        assert self.amateur is not None
        self.amateur.commit(draft, result)

    def describe(self) -> str:
        return f"{self.name} (amateur {self.amateur_name}, alpha {self.alpha:g})"

    def tie_scores(self, history: list[int], logits: torch.Tensor,
                   tolerance_of: Callable[[torch.Tensor], float]) -> tuple[torch.Tensor, float]:
        """A score gap is the expert's logit gap minus the amateur's (divided by its
        temperature): it moves by the sum of their tolerances. The cut compares the expert's
        logit gap to the top with -log α, so a token within the expert's tolerance of it counts
        as plausible."""
        expert, amateur = logits[0], self._amateur_logits[0, : logits.shape[-1]].to(logits.device)
        slack = tolerance_of(expert)
        scores = contrast(expert, amateur, self.alpha * math.exp(-slack), self.amateur_temperature)
        return scores, slack + tolerance_of(amateur) / self.amateur_temperature


def load_amateur(method: str, name: str, expert: Backend, amateur: Backend | None) -> Backend:
    """The amateur of a contrast: `amateur` if given, else `name` loaded on the expert's kind of
    backend; refused unless it speaks the expert's tokenizer."""
    from decodekit.drafters.second_model import check_same_tokenizer
    from decodekit.models.backends import shared_model

    if amateur is None:
        if not name:
            raise DecodekitError(f"{method} needs amateur=, a smaller model with the expert's tokenizer "
                                 "(e.g. qwen2.5-coder-0.5b for qwen2.5-coder-1.5b)")
        amateur = shared_model(name, expert)
    check_same_tokenizer(expert, amateur, name or amateur.name)
    if amateur.vocab_size < expert.vocab_size:
        raise DecodekitError(f"amateur '{amateur.name}' has {amateur.vocab_size} tokens, fewer than the "
                             f"expert's {expert.vocab_size}: they do not share a vocabulary")
    return amateur


def contrast(expert: torch.Tensor, amateur: torch.Tensor, alpha: float, amateur_temperature: float = 1.0) -> torch.Tensor:
    """Contrastive decoding's scores [..., vocab] from the two models' logits."""
    log_expert = torch.log_softmax(expert.float(), -1)
    log_amateur = torch.log_softmax(amateur.float() / amateur_temperature, -1)
    plausible = log_expert >= log_expert.amax(-1, keepdim=True) + (math.log(alpha) if alpha > 0 else -math.inf)
    return torch.where(plausible, log_expert - log_amateur, torch.tensor(-math.inf))


def check_unit(value: object, what: str) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0 <= value <= 1):
        raise DecodekitError(f"{what} must be in [0, 1], got {value!r}")
