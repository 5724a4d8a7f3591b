"""Contrastive search (Su et al., 2022): at each step the model's top-k next tokens are scored

    (1 − α) · p(v)  −  α · max_j cos(h_v, h_j)

where h_v is the last layer's hidden state after feeding candidate v and h_j runs over every
earlier position (prompt included): a candidate whose representation repeats one already in the
text is penalised. Defaults α = 0.6, k = 4; α = 0 is greedy decoding.

All k candidates run in one forward, as k rows forked from the one sequence (search/loop.py); the
chosen row's logits give the next step's candidates, as in transformers 4.55 (whose ids it is
tested against), and a tie goes to the more probable candidate.
"""

from __future__ import annotations

import math

import torch

from decodekit.errors import DecodekitError
from decodekit.search.beam import check_count
from decodekit.search.loop import Hypothesis, Rows


class ContrastiveSearch:
    needs_hidden = True

    def __init__(self, alpha: float = 0.6, top_k: int = 4):
        if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and math.isfinite(alpha)
                and 0 <= alpha <= 1):
            raise DecodekitError(f"contrastive-search: alpha (the degeneration penalty's weight) must be in [0, 1], "
                                 f"got {alpha!r}")
        check_count(top_k, "contrastive-search: top_k")
        self.alpha, self.top_k = float(alpha), top_k

    def start(self, prompt_ids: list[int], max_new_tokens: int, eos_ids: set[int]) -> None:
        self.max_new_tokens, self.eos_ids = max_new_tokens, eos_ids
        self.tokens: list[int] = []
        self.log_p = 0.0
        self.context = torch.empty(0)  # [positions, hidden], unit length
        self.candidates: list[int] = []
        self.candidate_probs = torch.empty(0)

    def step(self, logits: torch.Tensor, hidden: torch.Tensor | None) -> Rows | None:
        assert hidden is not None
        hidden = torch.nn.functional.normalize(hidden.float(), dim=-1)
        if not self.candidates:  # the prompt: every position's hidden state, and the next-token logits
            self.context, chosen = hidden, 0
        else:
            penalty = (hidden @ self.context.T).max(-1).values  # [k]
            score = (1 - self.alpha) * self.candidate_probs - self.alpha * penalty
            chosen = int(score.argmax())
            token = self.candidates[chosen]
            self.tokens.append(token)
            self.log_p += float(torch.log(self.candidate_probs[chosen]))
            self.context = torch.cat([self.context, hidden[chosen: chosen + 1]])
            if token in self.eos_ids or len(self.tokens) >= self.max_new_tokens:
                return None
        probs = torch.softmax(logits[chosen].float(), -1)
        self.candidate_probs, top = torch.topk(probs, min(self.top_k, probs.numel()))
        self.candidates = top.tolist()
        return Rows([chosen] * len(self.candidates), self.candidates)

    def result(self) -> list[Hypothesis]:
        return [Hypothesis(self.tokens, self.log_p, self.log_p)]
