"""Mirostat (Basu et al., 2021): sampling that steers the surprise of the text towards a target.

A running threshold μ (in bits) decides how much of the distribution may be sampled from; after
each sampled token x, μ moves by the error between x's surprise and the target τ:

    μ ← μ − η · (surprise(x) − τ),    surprise(x) = −log₂ p̃(x),    μ₀ = 2τ

where p̃ is the truncated distribution x was sampled from, renormalised (as llama.cpp computes
it). The distribution first gets the sampling temperature.

- v2 keeps the tokens whose surprise −log₂ p(x) is at most μ (always the most likely one).
- v1 keeps the top k tokens, with k from a Zipf fit of the top m = 100 probabilities:
  ŝ = Σ tᵢbᵢ / Σ tᵢ² over i < m − 1, tᵢ = ln((i + 2)/(i + 1)), bᵢ = ln(pᵢ/pᵢ₊₁);
  ε̂ = ŝ − 1, k = ((ε̂ · 2^μ) / (1 − N^−ε̂))^(1/ŝ), N the vocabulary size.

With a drafter, μ is carried down every draft path: node i's row uses the μ its parent's row
reaches after sampling node i's token there, which is the μ one-token decoding would hold at
that point. A drafted token the truncation removed can never be accepted (it has probability
0), so its subtree is never reached. μ advances on the committed tokens only; tokens a grammar
forces were not sampled and leave it alone.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from decodekit.errors import DecodekitError
from decodekit.sampling import SamplingConfig
from decodekit.strategies.base import Strategy, row_parents
from decodekit.types import Draft, VerifyResult

ZIPF_TOP = 100  # m: the probabilities v1's Zipf fit reads (Basu et al.)


class Mirostat(Strategy):
    name = "mirostat"

    def __init__(self, version: int = 2, tau: float = 3.0, eta: float = 0.1):
        if version not in (1, 2):
            raise DecodekitError(f"mirostat: version must be 1 or 2, got {version!r}")
        if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
            raise DecodekitError(f"mirostat: tau (the target surprise, in bits) must be > 0, got {tau!r}")
        if not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta > 0):
            raise DecodekitError(f"mirostat: eta (the learning rate) must be > 0, got {eta!r}")
        self.version: Literal[1, 2] = version  # type: ignore[assignment]
        self.tau, self.eta = float(tau), float(eta)
        self.mu = 2 * self.tau
        self.temperature = 1.0
        self._row_mu: list[float] = []
        self._row_log2p = torch.empty(0)

    def check_sampling(self, sampling: SamplingConfig) -> None:
        check_mirostat_sampling(sampling)

    def start(self, prompt_ids: list[int], sampling: SamplingConfig) -> None:
        check_mirostat_sampling(sampling)
        self.mu = 2 * self.tau
        self.temperature = sampling.temperature

    def reshape(self, history: list[int], draft: Draft, logits: torch.Tensor) -> torch.Tensor:
        """Each row truncated at the μ its path reaches; the rows' log₂ p̃ kept for commit."""
        scaled = logits.float() / self.temperature
        rows = scaled.shape[0]
        kept_rows: list[torch.Tensor] = []
        log2p_rows: list[torch.Tensor] = []
        mus = [self.mu]
        parents = row_parents(draft)
        for row in range(rows):
            if row > 0:
                parent = parents[row - 1]
                mus.append(self._advance(mus[parent], float(log2p_rows[parent][draft.tokens[row - 1]])))
            keep = self.truncate(scaled[row], mus[row])
            kept_rows.append(keep)
            log2p_rows.append(torch.log_softmax(scaled[row].masked_fill(~keep, -math.inf), -1) / math.log(2))
        self._row_mu, self._row_log2p = mus, torch.stack(log2p_rows)
        return logits.masked_fill(~torch.stack(kept_rows), -math.inf)

    def commit(self, draft: Draft, result: VerifyResult) -> None:
        """μ after the committed tokens: down the accepted path, then the model's own token."""
        row = 0
        for node in result.accepted:
            row = 1 + node
        self.mu = self._advance(self._row_mu[row], float(self._row_log2p[row][result.tokens[-1]]))

    def _advance(self, mu: float, log2p: float) -> float:
        if not math.isfinite(log2p):  # a token this row never samples: its subtree is unreachable
            return mu
        return mu - self.eta * (-log2p - self.tau)

    def truncate(self, scaled: torch.Tensor, mu: float) -> torch.Tensor:
        """The tokens row `scaled` (temperature applied) may sample at threshold μ: bool [vocab]."""
        log_probs = torch.log_softmax(scaled, -1)
        if self.version == 2:
            keep = -log_probs / math.log(2) <= mu
        else:
            k = zipf_top_k(log_probs, mu)
            keep = torch.zeros_like(log_probs, dtype=torch.bool)
            keep[torch.topk(log_probs, k).indices] = True
        keep[log_probs.argmax()] = True
        return keep


def zipf_top_k(log_probs: torch.Tensor, mu: float) -> int:
    """Mirostat v1's k: the top-k size whose expected surprise is μ under a Zipf fit."""
    vocab = log_probs.shape[-1]
    top = torch.topk(log_probs, min(ZIPF_TOP, vocab)).values.double()
    ranks = torch.arange(1, len(top), dtype=torch.float64)  # i + 1 for i = 0 .. m - 2
    t = torch.log((ranks + 1) / ranks)
    b = (top[:-1] - top[1:]).nan_to_num(nan=0.0, posinf=0.0)  # ln(p_i / p_{i+1}); -inf tails carry no slope
    s_hat = float((t * b).sum() / (t * t).sum()) if len(t) else 1.0
    eps_hat = s_hat - 1
    if s_hat <= 0 or abs(eps_hat) < 1e-12:
        return vocab
    try:
        k = ((eps_hat * 2 ** mu) / (1 - vocab ** -eps_hat)) ** (1 / s_hat)
    except OverflowError:
        return vocab
    if not math.isfinite(k) or isinstance(k, complex):
        return vocab
    return max(1, min(vocab, int(k)))


def check_mirostat_sampling(sampling: SamplingConfig) -> None:
    """Mirostat samples, and sets its own truncation: only the temperature may go with it."""
    if sampling.greedy:
        raise DecodekitError("mirostat samples: set temperature > 0 (1.0 is the usual choice)")
    changed = [name for name, off in (("top_k", 0), ("top_p", 1.0), ("min_p", 0.0), ("typical_p", 1.0),
                                      ("epsilon_cutoff", 0.0), ("eta_cutoff", 0.0))
               if getattr(sampling, name) != off]
    if changed:
        raise DecodekitError(f"mirostat sets its own truncation: turn off {', '.join(changed)}")
