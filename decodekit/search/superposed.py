"""Superposed decoding (Shen et al., 2024): k drafts from one forward per step. The model is fed
one input vector per step, the superposition Σ_d w_d · E[last token of draft d] of the drafts'
last-token embeddings, weighted by the drafts' scores (a softmax over them); its one next-token
distribution then extends every draft.

Each step, as in the authors' code (RAIVNLab/SuperposedDecoding), whose defaults are used:
- q: the softmax of logits / T (T = 0.06) cut to its m = 3k most likely tokens and renormalised;
- every draft d × token v scores (1 − α) log q(v) + α log g(v | draft d), g being a mixture of
  2- to 6-gram relative frequencies (weights 0.01, 0.04, 0.15, 0.18, 0.12) over an n-gram model
  built from the prompt and `corpus`; a draft whose every token has g = 0 falls back to
  (1 − α) log q(v) − 200; α = 0 uses the model alone;
- scores add up along a draft; the 2k best continuations are kept, of which the best k that do
  not end run on. Where this implementation decides (the authors' code always runs to the
  length limit): an end-of-sequence continuation ranked among the first k finishes its draft, as
  in beam search, and the search stops once k drafts have finished. Drafts are ranked by their
  mean score per token.

With k = 1 and α = 0 the superposition is a single token's embedding and the single draft is
greedy decoding. The drafts' log-probabilities under the model are not known (they were never
run as themselves), so `Hypothesis.log_prob` is None.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from decodekit.errors import DecodekitError
from decodekit.search.beam import check_count, check_finite
from decodekit.search.loop import Hypothesis, Rows
from decodekit.search.ngram import NgramModel

if TYPE_CHECKING:
    from decodekit.backend import Backend

NGRAM_WEIGHTS = (0.01, 0.04, 0.15, 0.18, 0.12)  # 2- to 6-gram, the authors' defaults (they sum to 0.5)
FALLBACK_PENALTY = 200.0


class SuperposedDecoding:
    needs_hidden = False

    def __init__(self, num_drafts: int = 3, alpha: float = 0.54, temperature: float = 0.06, tokens_per_step: int = 0,
                 corpus: str = ""):
        """`tokens_per_step`: the m most likely tokens each step considers (0: 3 × num_drafts);
        `corpus`: text to build the n-gram model from, besides the prompt."""
        check_count(num_drafts, "superposed: num_drafts")
        check_finite(alpha, "superposed: alpha")
        if not 0 <= alpha <= 1:
            raise DecodekitError(f"superposed: alpha (the n-gram model's weight) must be in [0, 1], got {alpha!r}")
        check_finite(temperature, "superposed: temperature")
        if temperature <= 0:
            raise DecodekitError(f"superposed: temperature must be > 0, got {temperature!r}")
        if not (isinstance(tokens_per_step, int) and tokens_per_step >= 0):
            raise DecodekitError(f"superposed: tokens_per_step must be an integer >= 0, got {tokens_per_step!r}")
        if not isinstance(corpus, str):
            raise DecodekitError(f"superposed: corpus must be text, got {type(corpus).__name__}")
        self.k, self.alpha, self.temperature = num_drafts, float(alpha), float(temperature)
        self.m = tokens_per_step or 3 * num_drafts
        self.corpus, self.corpus_ids = corpus, list[int]()

    def attach(self, backend: Backend) -> None:
        if self.corpus:
            ids = backend.encode(self.corpus)
            bos = getattr(getattr(backend, "tokenizer", None), "bos_token_id", None)
            self.corpus_ids = ids[1:] if ids and ids[0] == bos else ids

    def start(self, prompt_ids: list[int], max_new_tokens: int, eos_ids: set[int]) -> None:
        self.max_new_tokens, self.eos_ids, self.prompt = max_new_tokens, eos_ids, list(prompt_ids)
        self.ngrams = NgramModel()
        self.ngrams.add(self.prompt)
        self.ngrams.add(self.corpus_ids)
        self.alive: list[tuple[float, list[int]]] = [(0.0, [])]  # (summed score, tokens)
        self.finished: list[tuple[float, list[int]]] = []

    def step(self, logits: torch.Tensor, hidden: torch.Tensor | None) -> Rows | None:
        probs = torch.softmax(logits[0].float() / self.temperature, -1)
        top_probs, top = torch.topk(probs, min(self.m, probs.numel()))
        log_q = (top_probs / top_probs.sum()).log().tolist()
        tokens = top.tolist()
        candidates = []
        for score, draft in self.alive:
            for token, row_score in zip(tokens, self._row_scores(draft, tokens, log_q)):
                candidates.append((score + row_score, draft + [token]))
        candidates.sort(key=lambda c: -c[0])
        kept = candidates[: 2 * self.k]
        self.finished += [c for c in kept[: self.k] if c[1][-1] in self.eos_ids]
        self.alive = [c for c in kept if c[1][-1] not in self.eos_ids][: self.k]
        length = len(kept[0][1])
        if len(self.finished) >= self.k or length >= self.max_new_tokens or not self.alive:
            return None
        weights = torch.softmax(torch.tensor([score for score, _ in self.alive]), 0).tolist()
        mixture: dict[int, float] = {}
        for weight, (_, draft) in zip(weights, self.alive):
            mixture[draft[-1]] = mixture.get(draft[-1], 0.0) + weight
        return Rows([0], [self.alive[0][1][-1]], mixtures=[sorted(mixture.items())])

    def _row_scores(self, draft: list[int], tokens: list[int], log_q: list[float]) -> list[float]:
        """Each token's score after `draft`: the model's, interpolated with the n-gram mixture."""
        if self.alpha == 0:
            return log_q
        context = self.prompt + draft
        scores = []
        for token, lq in zip(tokens, log_q):
            g = self.ngrams.mixture(context, token, NGRAM_WEIGHTS)
            scores.append((1 - self.alpha) * lq + self.alpha * math.log(g) if g > 0 else -math.inf)
        if all(s == -math.inf for s in scores):  # no n-gram support at all: the model alone, penalised
            return [(1 - self.alpha) * lq - FALLBACK_PENALTY for lq in log_q]
        return scores

    def result(self) -> list[Hypothesis]:
        drafts = sorted(self.finished + self.alive, key=lambda d: -d[0] / len(d[1]))[: self.k]
        return [Hypothesis(tokens, score, None) for score, tokens in drafts]
