"""PEARL: parallel speculative decoding with adaptive draft length (Liu et al., 2024).

Draft-model speculation (draft_model.py) takes turns: the target waits while the draft model
drafts, and the draft model waits while the target verifies. PEARL lets them work at once.

Post-verify (done here). When propose() has returned a draft, a background thread goes on
drafting as if the whole draft will be accepted: it feeds the draft's last token to the draft
model, guesses the target's own next token (the bonus token: under greedy settings the draft
model's argmax, which is the target's token whenever the two agree there) and drafts past it,
while the loop runs the target's verification forward. If the whole draft is accepted and the
target's token is the guess, the next draft is already drafted and that step's drafting was
hidden behind the target's forward. Otherwise the speculative tokens are thrown away, and the
draft model's cache rolls back to the committed text the next time it is used
(SecondModel.logits_after keeps the longest prefix that still matches).

Adaptive draft length. The background drafting runs until the target is done (observe() is
called) or `max_draft` tokens past the guessed bonus token are ready. Under greedy settings the
next draft is whatever was ready (up to `max_draft` and the loop's budget): as many tokens as
the draft model could draft during one verification, so the length follows the two models'
speeds on this machine, as in the paper. When nothing is ready (the first step, after a
rejection, after a wrong guess) `first_draft` tokens are drafted now, as draft-model's
stop="fixed" does.

Pre-verify (not done). In the paper the target also verifies a draft's first token while the
draft model drafts the rest, to drop a draft whose first token is wrong early. decodekit's loop
runs the target forward itself, after propose() has returned, with one forward verifying the
whole draft; a drafter cannot start a target forward of its own without a second target cache
and a second verification outside the loop, so pre-verify does not fit the protocol unchanged.

Sampling settings. Draft tokens are drawn from the draft model's distribution under the call's
settings and Draft.draft_probs holds, for every draft token, the distribution it was drawn from,
so speculative sampling stays exact (as in draft_model.py). Tokens drafted past the guessed bonus
token were drawn given that guess: they are used only when the target's token is the guess.
  - Each draft token's draw is keyed by its absolute position (a generator seeded from the call's
    seed and the position), not taken from a running stream whose state would depend on how far
    the background thread got. So a token drafted in the background is the very token that
    drafting it later would give, and using it changes nothing but the time. A position drafted
    again after a rejection reuses its key; the earlier draw there was thrown away unverified,
    so nothing committed depends on it.
  - The guess of the target's token is drawn from the draft distribution with the uniform the
    verifier will draw the target's token with at that position (verify/speculative.py: after a
    fully accepted chain it is inverse_cdf(p, rng.uniform(position, TOKEN_STREAM))). Drawn
    independently it would match only with probability sum_x p(x) q(x), which is small unless
    both are peaked; with the same uniform it matches whenever p and q put that uniform on the
    same token. The guess is only compared with the target's token, never verified as a draft
    token (that would correlate its rejection with the residual draw), and a kept chain holds
    what fresh drafting would give, so exactness does not depend on it.
  - The draft length is `first_draft` (background tokens where ready, the rest drafted now), not
    what happened to be ready: what a position commits depends on whether a draft token covers
    it (speculative sampling or the target's plain draw), so a timing-driven length would change
    the text of a seeded run from run to run. The adaptive length is the greedy mode's.

Threads. Torch ops release the GIL, so the background thread's draft forwards run while the main
thread's target forward runs; the target and the draft model are different objects with caches
of their own, and the main thread never touches the draft model's cache while a background run
is on (propose, observe, reset and attach stop it first, and it stops after its current forward).
A layer-skipping view of the target is refused as the draft: it swaps the target's own layers,
so its forwards cannot overlap the target's. On CUDA the same design runs unchanged, with no
streams of its own: both threads queue kernels on the current stream, so what overlaps is each
side's host work (Python, kernel launches: most of a small model's step), and the draft model's
synchronize() also waits for the target's queued kernels.

What torch does with two threads at once (torch 2.13, OpenMP build): the intra-op thread count
is, in effect, per calling thread. torch.set_num_threads sets the OpenMP and MKL counts of the
thread that calls it, and the default that threads started later pick up on their first op; a
thread that has already run ops keeps its own count. With draft_threads=0 (the default: torch's
setting left alone) both threads' forwards use torch's count; draft_threads=N makes the
background thread's forwards use N while the target's stay as they were (tests/test_pearl.py
checks both), at the price of N becoming the default of threads started later.

Measured on the project's 2-core CPU (qwen2.5-coder-1.5b target verifying 5 tokens while the
0.5b draft model runs one-token forwards, fp32, medians of 5; runs vary by ~20%): alone the
target's forward takes 410-520 ms with 2 threads (730-860 ms with 1) and a draft forward 75-110
ms; at once, with 2 + 2 threads, the target's takes 810-840 ms while the draft model gets ~6
forwards of ~135 ms done. So the overlap adds little or no total throughput here (two busy teams
share two cores and the memory bus); it moves the draft model's time into the target's forward.
Splits did not help: target 2 + draft 1 made the target's forward 1200-1420 ms (presumably its
two-thread team waiting on the thread that shares a core with the draft model's), except with
OMP_WAIT_POLICY=PASSIVE (~835 ms, as 2 + 2); 1 + 1 gave 813-1130 ms, and leaves the target on
one thread whenever nothing overlaps. End to end (48 greedy tokens, one code prompt, two runs):
ar 4.1-5.0 tokens/s, draft-model stop=fixed max_draft=4 5.8-6.0 (τ 4.4), pearl 3.0-4.6 (τ 4.8-5.3,
drafting hidden but the target's forwards 2-3x slower), pearl draft_threads=1 2.0-3.4. PEARL is
for devices whose target forward leaves capacity idle, not for a saturated 2-core CPU.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from decodekit.budget import Budget
from decodekit.drafters.draft_model import ModelDrafterBase
from decodekit.drafters.second_model import sample_or_argmax
from decodekit.errors import DecodekitError
from decodekit.sampling import SamplingConfig, probabilities
from decodekit.types import Draft, VerifyResult
from decodekit.verify.random import Randomness, SeededRandomness, inverse_cdf
from decodekit.verify.speculative import TOKEN_STREAM

if TYPE_CHECKING:
    from collections.abc import Callable

    from decodekit.backend import Backend


class _Chain:
    """Draft-model tokens continuing `base` (committed text), in order, with the distribution
    each was drawn from (sampling settings only). The draft model's cache holds a prefix of
    base + tokens: every token but the last, once drafting has gone past the base."""

    def __init__(self, base: list[int]):
        self.base = base
        self.tokens: list[int] = []
        self.rows: list[torch.Tensor] = []
        self.guesses: list[bool] = []  # drawn as a guess of the target's token: never a draft token

    def after(self, history: list[int]) -> _Chain | None:
        """The part of this chain that continues `history`, or None when the text has left it
        (a draft token was rejected, or the target's own token is not the one guessed)."""
        done = len(history) - len(self.base)
        if done < 0 or done > len(self.tokens):
            return None
        if history[: len(self.base)] != self.base or history[len(self.base) :] != self.tokens[:done]:
            return None
        rest = _Chain(list(history))
        rest.tokens, rest.rows, rest.guesses = self.tokens[done:], self.rows[done:], self.guesses[done:]
        return rest

    def cut(self, length: int) -> None:
        del self.tokens[length:], self.rows[length:], self.guesses[length:]


class _Worker:
    """One background drafting run: grows `chain` until stopped, `cap` tokens long, or an EOS.

    The chain's lists are appended to by this thread only; the main thread reads them after
    finish() has joined it (list.append is atomic, so len() is safe to peek at meanwhile)."""

    def __init__(self, grow: Callable[[_Chain], int], chain: _Chain, cap: int, eos: set[int], threads: int):
        self.chain, self.cap = chain, cap
        self.stop = threading.Event()
        self.error: BaseException | None = None
        # Not a daemon: interpreter exit waits for the current forward instead of killing it mid-op
        # (a run is at most cap forwards of the draft model).
        self.thread = threading.Thread(target=self._run, args=(grow, eos, threads), name="pearl-draft")
        self.thread.start()

    def _run(self, grow: Callable[[_Chain], int], eos: set[int], threads: int) -> None:
        try:
            if threads:
                torch.set_num_threads(threads)  # this thread's intra-op threads (see the module docstring)
            while len(self.chain.tokens) < self.cap and not self.stop.is_set():
                if grow(self.chain) in eos:
                    break  # nothing follows the end of the text
        except BaseException as error:  # handed to the main thread by finish()
            self.error = error

    def finish(self, reraise: bool = True) -> _Chain:
        """Stop after the current forward and wait; the chain as far as it got."""
        self.stop.set()
        self.thread.join()
        if reraise and self.error is not None:
            raise self.error
        return self.chain


class _Background:
    """The drafter's work in progress: the running worker, or the chain kept for the next step.
    Copies start with none: a deep copy never duplicates (or shares) a thread or its chain."""

    def __init__(self) -> None:
        self.worker: _Worker | None = None
        self.chain: _Chain | None = None

    def __deepcopy__(self, memo) -> _Background:
        return _Background()


@dataclass
class PearlStats:
    """What the background drafting achieved, over the drafter's life (copied with it)."""

    steps: int = 0  # verifications of a non-empty draft
    fully_accepted: int = 0  # ... that accepted every draft token
    guessed: int = 0  # ... and whose bonus token the draft model had guessed
    prepared_tokens: int = 0  # draft tokens proposed from background work
    drafted_now: int = 0  # draft tokens drafted inside propose()


class PearlDrafter(ModelDrafterBase):
    """PEARL's post-verify with its adaptive draft length, on a separate draft model.

    Options: `draft` (the draft model, required), `max_draft` (the most tokens one draft holds,
    and how far past the guessed bonus token background drafting goes), `first_draft` (tokens
    drafted in propose() when nothing is ready, and the draft length under sampling settings),
    `draft_threads` (torch intra-op threads for the background thread's forwards; 0 leaves
    torch's setting alone), `draft_dtype`.

    draft_threads=1 measured slower than the default on the 2-core CPU (module docstring): it is
    there for machines with cores to split, not for this one.
    """

    name = "pearl"

    def __init__(self, draft: str | Backend | None = None, max_draft: int = 16, first_draft: int = 4,
                 draft_threads: int = 0, draft_dtype: str = ""):
        super().__init__(draft, draft_dtype)
        self.check_draft_option()
        if max_draft < 1:
            raise DecodekitError(f"max_draft must be >= 1, got {max_draft}")
        if not 1 <= first_draft <= max_draft:
            raise DecodekitError(f"first_draft must be between 1 and max_draft ({max_draft}), got {first_draft}")
        if draft_threads < 0:
            raise DecodekitError(f"draft_threads must be >= 0 (0 = torch's setting), got {draft_threads}")
        self.max_draft, self.first_draft, self.draft_threads = max_draft, first_draft, draft_threads
        self.stats = PearlStats()
        self.last_prepared = 0  # draft tokens the last propose() took from background work
        self._seed = 0
        self._rng: Randomness = SeededRandomness(0)
        self._background = _Background()

    def make_second_model(self, target: Backend) -> Backend:
        backend = super().make_second_model(target)
        if _weights(backend) is _weights(target):
            raise DecodekitError("pearl runs the draft model while the target verifies, so the draft must be a separate "
                                 "model: the target itself or a layer-skipping view of it cannot overlap its own forwards")
        return backend

    def attach(self, target: Backend) -> None:
        self._halt()
        super().attach(target)
        assert self.model is not None
        # Forwards that overlap the target's are slowed by it: kept out of the draft model's
        # cost curve, which other drafters sharing the model price their drafts with.
        self.model.record_latency = False

    def reset(self, prompt_ids: list[int], sampling: SamplingConfig, rng: Randomness) -> None:
        self._halt()
        super().reset(prompt_ids, sampling, rng)
        # Keys the draws of sampled draft tokens by position (see the module docstring).
        self._seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        self._rng = rng

    def propose(self, history: list[int], budget: Budget) -> Draft:
        assert self.model is not None and self.target is not None
        chain = self._take(history)
        limit = min(self.max_draft, budget.max_tokens)
        self.last_prepared = 0
        if limit == 0:
            self._background.chain = chain
            return Draft.empty()
        if self.sampling.greedy and chain.tokens:
            size = min(len(chain.tokens), limit)  # the adaptive length: what was ready
        else:
            size = min(self.first_draft, limit)
        if True in chain.guesses[:size]:  # a guess drawn with the verifier's uniform is never a draft token
            chain.cut(chain.guesses.index(True))
        self.last_prepared = min(len(chain.tokens), size)
        while len(chain.tokens) < size:
            self._grow(chain)
        self.stats.prepared_tokens += self.last_prepared
        self.stats.drafted_now += size - self.last_prepared
        draft_probs = None if self.sampling.greedy else torch.stack(chain.rows[:size])
        draft = Draft(chain.tokens[:size], draft_probs=draft_probs)
        self._start(chain, size)
        return draft

    def observe(self, draft: Draft, result: VerifyResult, target_logits: torch.Tensor) -> None:
        background = self._background
        worker, background.worker = background.worker, None
        chain = worker.finish() if worker is not None else background.chain
        if chain is None or not len(draft):
            return
        self.stats.steps += 1
        if result.num_accepted == len(draft):
            self.stats.fully_accepted += 1
            guess = chain.tokens[len(draft)] if len(chain.tokens) > len(draft) else None
            self.stats.guessed += int(guess == result.tokens[-1])
        # Tokens drafted past what was committed stay for the next propose(); none when the text left them.
        background.chain = chain.after(chain.base + result.tokens)

    def _take(self, history: list[int]) -> _Chain:
        """Stop background work; what of its chain continues `history` (empty when nothing)."""
        background = self._background
        worker, background.worker = background.worker, None
        chain = worker.finish() if worker is not None else background.chain
        background.chain = None
        rest = chain.after(history) if chain is not None else None
        return rest if rest is not None else _Chain(list(history))

    def _start(self, chain: _Chain, size: int) -> None:
        """Draft on in the background past the first `size` tokens of `chain` (the draft just
        proposed), through the guessed bonus token and `max_draft` tokens beyond it."""
        assert self.model is not None and self.target is not None
        eos = self.target.eos_token_ids
        context = min(self.target.context_length, self.model.backend.context_length)
        cap = min(size + 1 + self.max_draft, context - len(chain.base))
        if len(chain.tokens) >= cap or any(token in eos for token in chain.tokens):
            self._background.chain = chain
            return
        # Under sampling, where the target's own tokens will fall if every draft is accepted: this
        # draft's end, then every first_draft + 1 tokens (the length is first_draft there).
        period = 0 if self.sampling.greedy else self.first_draft + 1

        def grow(chain: _Chain) -> int:
            index = len(chain.tokens)
            return self._grow(chain, guess=period > 0 and index >= size and (index - size) % period == 0)

        self._background.worker = _Worker(grow, chain, cap, eos, self.draft_threads)

    def _grow(self, chain: _Chain, guess: bool = False) -> int:
        """Draft one more token onto `chain`: one draft-model forward (which feeds the chain's
        last token, or what the cache is missing), then a draw. Returns the token.

        Under sampling a draft token's draw is keyed by its position; a `guess` of the target's
        token is drawn with the very uniform the verifier will draw that token with (see the
        module docstring), and is never proposed as a draft token."""
        assert self.model is not None
        logits = self.model.logits_after(chain.base + chain.tokens)
        position = len(chain.base) + len(chain.tokens)
        if self.sampling.greedy:
            token, probs = sample_or_argmax(logits, self.sampling, self.generator)  # the argmax
        elif guess:
            probs = probabilities(logits, self.sampling).cpu()
            token = inverse_cdf(probs, self._rng.uniform(position, TOKEN_STREAM))
        else:
            keyed = torch.Generator().manual_seed(random.Random((self._seed << 48) | position).getrandbits(63))
            token, probs = sample_or_argmax(logits, self.sampling, keyed)
        chain.tokens.append(token)
        if not self.sampling.greedy:
            chain.rows.append(probs)
        chain.guesses.append(guess)
        return token

    def _halt(self) -> None:
        """Stop background work and forget it (a new generation, or a new target)."""
        background = self._background
        worker, background.worker = background.worker, None
        if worker is not None:
            worker.finish(reraise=False)  # an error there belongs to a generation that is over
        background.chain = None


def _weights(backend: Backend) -> object:
    """The module whose weights a backend runs (a layer-skipping view runs its full model's)."""
    full = getattr(backend, "full", backend)
    return getattr(full, "model", full)
