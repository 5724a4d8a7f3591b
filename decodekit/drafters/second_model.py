"""A second predictor beside the target: a smaller model with the same tokenizer, or the target
itself with layers skipped. Drafters built on it (draft-model, self-spec, spectr, rsd) share
this bookkeeping: which model, its KV cache kept in step with the committed text, and what its
forwards cost.

The cache follows the text lazily. After a verification the committed text may end in tokens
the draft model never saw (the target's own token, and the last draft token when every draft
token was accepted: the catch-up step), or the draft model may have run ahead on tokens that
were rejected. `logits_after(history)` keeps the longest cached prefix that still matches and
feeds the rest in one forward.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from decodekit.errors import DecodekitError
from decodekit.sampling import SamplingConfig, probabilities
from decodekit.types import Draft

if TYPE_CHECKING:
    from decodekit.backend import Backend, KVCache

# Texts whose ids must agree between the target and a draft model: plain words, code,
# digits, whitespace runs and non-Latin script, where tokenizers most often differ.
TOKENIZER_PROBES = [
    "The quick brown fox jumps over the lazy dog.",
    "def f(x):\n    return x ** 2  # square\n",
    "3.14159 + 2718 = 2721.14159",
    "naïve café — 東京 🙂",
]


def check_same_tokenizer(target: Backend, draft: Backend, draft_label: str) -> None:
    """A draft model must speak the target's token ids, or every draft is noise (and a
    sampled draft's probabilities would be over the wrong tokens)."""
    for text in TOKENIZER_PROBES:
        ours, theirs = target.encode(text), draft.encode(text)
        if ours != theirs:
            raise DecodekitError(
                f"draft model '{draft_label}' does not share the tokenizer of '{target.name}': {text!r} encodes to "
                f"{theirs[:8]}... instead of {ours[:8]}...; pick a draft model from the target's family")
    if not target.eos_token_ids & draft.eos_token_ids:
        raise DecodekitError(f"draft model '{draft_label}' ends text with tokens {sorted(draft.eos_token_ids)}, "
                             f"'{target.name}' with {sorted(target.eos_token_ids)}: they do not share a tokenizer")


class SecondModel:
    """A backend and its cache, following the committed text; times its own forwards."""

    def __init__(self, backend: Backend, target_vocab: int):
        self.backend = backend
        self.target_vocab = target_vocab
        self.cache: KVCache | None = None
        self.fed: list[int] = []  # the tokens the cache holds, in order
        self.forward_s = 0.0  # total time in this model's forwards (for reports)
        # Keep the last hidden states of each forward's rows (an acceptance head reads them).
        self.want_hidden = False
        self.hidden: torch.Tensor | None = None  # [rows, hidden] of the last forward
        self.record_latency = True  # feed the backend's cost curve with this model's timings

    def __deepcopy__(self, memo) -> SecondModel:
        # The benchmark copies drafters between repeats: share the weights, start a new cache.
        clone = SecondModel(self.backend, self.target_vocab)
        clone.want_hidden, clone.record_latency = self.want_hidden, self.record_latency
        return clone

    def reset(self) -> None:
        self.cache, self.fed = None, []

    def logits_after(self, history: list[int]) -> torch.Tensor:
        """The model's logits [target_vocab] for what follows `history`; the cache then holds
        all of `history`."""
        logits = self._forward(self._rewind(history), Draft.empty())[-1]
        self.fed = list(history)
        return logits

    def extend(self, token: int) -> torch.Tensor:
        """Feed one more token after what the cache holds; its logits [target_vocab]."""
        logits = self._forward([token], Draft.empty())[-1]
        self.fed.append(token)
        return logits

    def tree_logits(self, history: list[int], tree: Draft) -> torch.Tensor:
        """Logits [1 + len(tree), target_vocab] after `history` and after every node of `tree`
        (a draft relative to `history`). The tree is cropped off the cache again, which then
        holds `history`: calls can grow a tree level by level."""
        logits = self._forward(self._rewind(history), tree)
        assert self.cache is not None
        # Keep the committed text only: the next level re-feeds the whole tree.
        self.cache.crop(len(history))
        self.fed = list(history)
        return logits

    def _rewind(self, history: list[int]) -> list[int]:
        """Crop the cache to the longest fed prefix still in `history`; return what is left to
        feed (at least one token: a forward must end on a token to give logits after it)."""
        keep = min(_common_prefix(self.fed, history), len(history) - 1)
        if self.cache is None:
            self.cache = self.backend.new_cache()
        self.cache.crop(keep)
        return history[keep:]

    def _forward(self, pending: list[int], draft: Draft) -> torch.Tensor:
        assert self.cache is not None
        self.backend.synchronize()
        start = time.perf_counter()
        if self.want_hidden:
            forward_hidden = getattr(self.backend, "forward_hidden", None)
            if forward_hidden is None:
                backend = getattr(self.backend, "kind", type(self.backend).__name__)
                raise DecodekitError(f"{self.backend.name} runs on the {backend} backend, which does not expose hidden "
                                     "states: a trained acceptance head needs the transformers backend "
                                     "(or use predictor='confidence')")
            logits, self.hidden = forward_hidden(pending, draft, self.cache)
        else:
            logits = self.backend.forward(pending, draft, self.cache)
        self.backend.synchronize()
        seconds = time.perf_counter() - start
        self.forward_s += seconds
        if len(pending) == 1 and self.record_latency:  # catch-up and prefill sizes would distort the per-size cost
            self.backend.latency.record(1 + len(draft), seconds)
        return _to_vocab(logits, self.target_vocab)

    def step_cost(self, target: Backend) -> float:
        """One of this model's one-token forwards, relative to the target's one-token step
        (before either is measured: a guess that keeps drafting on)."""
        mine, theirs = self.backend.latency.seconds(1), target.latency.seconds(1)
        if mine is None or theirs is None or theirs <= 0:
            return 0.3
        return mine / theirs


def sample_or_argmax(logits: torch.Tensor, sampling: SamplingConfig,
                     generator: torch.Generator) -> tuple[int, torch.Tensor]:
    """A token from the draft's distribution under the call's settings, and that distribution
    ([vocab], fp32, on the CPU). Greedy settings give the argmax and no distribution (an empty
    tensor): a greedy draft is a point mass and carries none."""
    if sampling.greedy:
        return int(logits.argmax()), logits.new_empty(0)
    probs = probabilities(logits, sampling).cpu()
    return int(torch.multinomial(probs, 1, generator=generator)), probs


def draft_generator(seed_source: float) -> torch.Generator:
    """The drafter's own random stream, seeded from the call's randomness: independent of the
    draws the verifier makes, and reproducible for a given seed."""
    return torch.Generator().manual_seed(int(seed_source * 2**62))


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:  # the usual case, at C speed
        return n
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _to_vocab(logits: torch.Tensor, vocab: int) -> torch.Tensor:
    """Logits over the target's vocabulary: some families pad their embedding matrices to
    different sizes over the same tokenizer; ids past the tokenizer's are never drafted."""
    have = logits.shape[-1]
    if have == vocab:
        return logits
    if have > vocab:
        return logits[..., :vocab]
    pad = logits.new_full((*logits.shape[:-1], vocab - have), float("-inf"))
    return torch.cat([logits, pad], dim=-1)
