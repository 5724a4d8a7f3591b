"""Momentum decoding (Lan et al., 2022): greedy decoding seen as walking a graph whose nodes are
the tokens of the text so far. A step to a new node is free; a step back into the graph is
resisted according to how long a repeated n-gram it would close:

    score(v) = p(v) − α · R(L(v))    over the model's top-k tokens v

L(v) is 0 if v is not in the text yet, otherwise the longest n ≤ max_ngram such that the last
n − 1 tokens followed by v already occur in the text (1 if none does). The text includes the
prompt. Resistance functions, as in the authors' code (gmftbyGMFTBY/MomentumDecoding), whose
defaults are used here (α = 0.2, k = 5, max_ngram = 5, "step"):

- "step": 0 up to L = 3, 5 at L = 4, and L = 5 is forbidden (infinite resistance);
- "constant": 2 for any L ≥ 1;
- "log": log₆(1 + L) / 0.2;
- "exp": 1.5^L / 2.

α = 0 (no resistance) is greedy decoding.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from decodekit.errors import DecodekitError
from decodekit.search.beam import check_count
from decodekit.search.loop import Hypothesis, Rows

RESISTANCES: dict[str, Callable[[int], float]] = {
    "step": lambda n: {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0, 4: 5.0}.get(n, math.inf),
    "constant": lambda n: 0.0 if n == 0 else 2.0,
    "log": lambda n: 0.0 if n == 0 else math.log(1 + n, 6) / 0.2,
    "exp": lambda n: 0.0 if n == 0 else 1.5 ** n / 2,
}


def repetition_length(text: list[int], candidate: int, max_ngram: int) -> int:
    """L(candidate) after `text`: 0 if new, else the longest repeated n-gram (≥ 1) it would close.

    >>> repetition_length([1, 2, 3, 1, 2], 3, 5), repetition_length([1, 2, 3], 9, 5), repetition_length([1, 2], 1, 5)
    (3, 0, 1)
    """
    if candidate not in text:
        return 0
    for n in range(min(max_ngram, len(text) + 1), 1, -1):
        gram = text[len(text) - n + 1:] + [candidate]
        if any(text[i: i + n] == gram for i in range(len(text) - n + 1)):
            return n
    return 1


class MomentumDecoding:
    needs_hidden = False

    def __init__(self, alpha: float = 0.2, top_k: int = 5, max_ngram: int = 5, resistance: str = "step"):
        if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and math.isfinite(alpha) and alpha >= 0):
            raise DecodekitError(f"momentum: alpha (the resistance's weight) must be >= 0, got {alpha!r}")
        check_count(top_k, "momentum: top_k")
        check_count(max_ngram, "momentum: max_ngram")
        if resistance not in RESISTANCES:
            raise DecodekitError(f"momentum: unknown resistance '{resistance}': choose one of {', '.join(RESISTANCES)}")
        self.alpha, self.top_k, self.max_ngram = float(alpha), top_k, max_ngram
        self.resistance = RESISTANCES[resistance]

    def start(self, prompt_ids: list[int], max_new_tokens: int, eos_ids: set[int]) -> None:
        self.max_new_tokens, self.eos_ids = max_new_tokens, eos_ids
        self.text = list(prompt_ids)
        self.tokens: list[int] = []
        self.log_p = 0.0

    def step(self, logits: torch.Tensor, hidden: torch.Tensor | None) -> Rows | None:
        probs = torch.softmax(logits[0].float(), -1)
        top_probs, top = torch.topk(probs, min(self.top_k, probs.numel()))
        token = int(top[0])
        if self.alpha > 0:  # α = 0 must be exactly greedy: no 0 · inf
            scores = [float(p) - self.alpha * self.resistance(repetition_length(self.text, int(v), self.max_ngram))
                      for p, v in zip(top_probs, top)]
            token = int(top[max(range(len(scores)), key=lambda i: (scores[i], -i))])
        self.text.append(token)
        self.tokens.append(token)
        self.log_p += math.log(float(probs[token]))
        if token in self.eos_ids or len(self.tokens) >= self.max_new_tokens:
            return None
        return Rows([0], [token])

    def result(self) -> list[Hypothesis]:
        return [Hypothesis(self.tokens, self.log_p, self.log_p)]
