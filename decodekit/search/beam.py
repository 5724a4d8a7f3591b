"""Beam search, as transformers 5 runs it (GenerationMixin._beam_search), so that its n-best
ids and scores can be compared with transformers' own.

Each step every running beam's log-probabilities are added to its score, and the top
K = 2 · num_beams continuations over all beams are taken (2: at most one of each beam's
continuations ends, so at least num_beams go on). Of these:
- the best num_beams that do not end run on;
- those among the first num_beams that end (on an end-of-sequence token, or at the length
  limit) are finished hypotheses, scored log p / (new tokens, the end token included) ^
  length_penalty; the best num_beams finished ones are kept.

When to stop (`early_stopping`):
- True: as soon as num_beams hypotheses have finished;
- False (transformers' default): once num_beams have finished and the best running beam's score,
  divided by its current length ^ length_penalty, cannot beat the worst finished one;
- "never": the same, but with a positive length penalty the best running beam is assumed to
  run to the length limit (the canonical, exhaustive rule).
"""

from __future__ import annotations

import math

import torch

from decodekit.errors import DecodekitError
from decodekit.search.loop import Hypothesis, Rows

NEG = -1.0e9  # transformers' "impossible" score: initial non-first beams, empty finished slots


class BeamSearch:
    needs_hidden = False

    def __init__(self, num_beams: int = 4, length_penalty: float = 1.0, early_stopping: bool | str = False,
                 num_return_sequences: int = 0):
        """`num_return_sequences`: how many hypotheses `result` returns (0: all num_beams)."""
        check_beam_options(num_beams, length_penalty, early_stopping, num_return_sequences)
        self.num_beams, self.length_penalty, self.early_stopping = num_beams, float(length_penalty), early_stopping
        self.num_return = num_return_sequences or num_beams

    def start(self, prompt_ids: list[int], max_new_tokens: int, eos_ids: set[int]) -> None:
        self.max_new_tokens, self.eos_ids = max_new_tokens, eos_ids
        # The prompt's row stands for all beams: the others start at NEG, as in transformers.
        self.running: list[list[int]] = [[]]
        self.running_scores = torch.zeros(1)
        self.finished: list[tuple[float, float, list[int]]] = []  # (score, log p, tokens), best first
        self.can_improve = True

    def step(self, logits: torch.Tensor, hidden: torch.Tensor | None) -> Rows | None:
        vocab = logits.shape[-1]
        scores = torch.log_softmax(logits.float(), -1) + self.running_scores[:, None]
        top_scores, top_index = torch.topk(scores.flatten(), k=min(2 * self.num_beams, scores.numel()))
        length = len(self.running[0]) + 1  # new tokens of every continuation, this one included
        candidates = []
        for rank, (score, index) in enumerate(zip(top_scores.tolist(), top_index.tolist())):
            beam, token = divmod(index, vocab)
            ends = token in self.eos_ids or length >= self.max_new_tokens
            candidates.append((rank, score, beam, token, ends))
        self._finish([c for c in candidates if c[4] and c[0] < self.num_beams], length)
        going = sorted(candidates, key=lambda c: (c[4], -c[1]))[: self.num_beams]  # not ending first, by score
        parents = [c[2] for c in going]
        tokens = [c[3] for c in going]
        self.running = [self.running[beam] + [token] for beam, token in zip(parents, tokens)]
        self.running_scores = torch.tensor([c[1] + (NEG if c[4] else 0.0) for c in going])
        self._check_improvement(length)
        if all(c[4] for c in candidates) or not self.can_improve or self._full_and_early():
            return None
        return Rows(parents, tokens)

    def _finish(self, ended: list[tuple], length: int) -> None:
        if self._full_and_early() or not self.can_improve:
            return
        new = [(score / length ** self.length_penalty, score, self.running[beam] + [token])
               for _, score, beam, token, _ in ended]
        self.finished = sorted(self.finished + new, key=lambda f: -f[0])[: self.num_beams]

    def _full_and_early(self) -> bool:
        return self.early_stopping is True and len(self.finished) == self.num_beams

    def _check_improvement(self, length: int) -> None:
        """transformers' heuristic: stop once the best running beam cannot beat the worst kept
        finished one (sticky: once it cannot, it never can again)."""
        if self.early_stopping == "never" and self.length_penalty > 0:
            length = self.max_new_tokens
        best_possible = float(self.running_scores[0]) / length ** self.length_penalty
        worst = self.finished[-1][0] if len(self.finished) == self.num_beams else NEG
        self.can_improve = self.can_improve and best_possible > worst

    def result(self) -> list[Hypothesis]:
        return [Hypothesis(tokens, score, log_p) for score, log_p, tokens in self.finished[: self.num_return]]


def check_count(value: object, name: str) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise DecodekitError(f"{name} must be an integer >= 1, got {value!r}")


def check_beam_options(num_beams: object, length_penalty: object, early_stopping: object,
                       num_return_sequences: object) -> None:
    """The options beam search and diverse beam search share."""
    check_count(num_beams, "num_beams")
    check_finite(length_penalty, "length_penalty")
    if early_stopping not in (True, False, "never"):
        raise DecodekitError(f"early_stopping must be true, false or 'never', got {early_stopping!r}")
    if not (isinstance(num_return_sequences, int) and isinstance(num_beams, int)
            and 0 <= num_return_sequences <= num_beams):
        raise DecodekitError(f"num_return_sequences must be between 1 and num_beams ({num_beams}), "
                             f"got {num_return_sequences!r}")


def check_finite(value: object, name: str) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
        raise DecodekitError(f"{name} must be a finite number, got {value!r}")
