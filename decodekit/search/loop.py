"""The search loop: decoding that keeps several hypotheses, or scores several candidates per step,
beside the speculative loop (loop.py). Written once; each search method (search/*.py) is a
small set of scoring and selection rules behind the `Search` protocol.

    speculative loop (loop.py)                  search loop (this file)
    ─────────────────────────                   ───────────────────────
    one sequence                                several rows side by side in one cache
    draft ─► forward(pending + draft tree)      select(rows) ─► forward_rows(one token per row)
    ─► mask ─► reshape ─► verify ─► commit      ─► search.step(logits) picks rows and tokens
    output: the target's own distribution       output: the search's n-best hypotheses

Each step the search names, for every row of the next forward, the row it continues (an index
twice forks a hypothesis, an index left out drops one) and the token it appends. The cache is
reordered to match, and the backend runs one token per row. Rows are all equally long, so no
padding is needed: the batch is as plain as a forward gets.

Why rows and not a one-level tree for contrastive search's k candidates (the tree forward of the
speculative loop would save forking the cache): with rows, every search shares this loop, and
forking costs a copy of the cache that transformers' DynamicCache already makes on every append.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch

from decodekit.errors import DecodekitError, Stopped
from decodekit.types import Draft

if TYPE_CHECKING:
    from decodekit.backend import Backend


@dataclass(frozen=True)
class Rows:
    """The next forward's rows: row i continues old row `parents[i]` with `tokens[i]`, or, where
    `mixtures` is given, with the superposition Σ w · embedding(token) of mixtures[i]'s
    (token, w) pairs (superposed decoding); `tokens` then names each row's leading token."""

    parents: list[int]
    tokens: list[int]
    mixtures: list[list[tuple[int, float]]] | None = None


@dataclass(frozen=True)
class Hypothesis:
    """One output of a search: its new tokens (an end-of-sequence token included when it ended
    on one), the score the search ranked it by, and its log-probability under the model."""

    token_ids: list[int]
    score: float
    log_prob: float | None  # None where the search never ran the hypothesis as itself (superposed)


@dataclass
class SearchStats:
    steps: int = 0
    rows: int = 0  # summed over steps: the tokens the model ran
    wall_s: float = 0.0
    forward_s: float = 0.0


@dataclass
class SearchResult:
    hypotheses: list[Hypothesis]  # best first
    stats: SearchStats = field(default_factory=SearchStats)


class Search(Protocol):
    """A search method's rules. `step` sees each forward's logits [rows, vocab] (the prompt's
    next-token logits [1, vocab] first) and, when `needs_hidden`, the rows' last-layer hidden
    states [rows, hidden] (first: every prompt position's); it returns the next rows, or None
    when the search is over."""

    needs_hidden: bool

    def start(self, prompt_ids: list[int], max_new_tokens: int, eos_ids: set[int]) -> None: ...

    def step(self, logits: torch.Tensor, hidden: torch.Tensor | None) -> Rows | None: ...

    def result(self) -> list[Hypothesis]: ...


def run_search(backend: Backend, prompt_ids: list[int], search: Search, max_new_tokens: int,
               should_stop: Callable[[], bool] | None = None) -> SearchResult:
    """Prefill the prompt once, then step the search until it stops. `should_stop` is asked
    before every step; when it says yes, `Stopped` is raised (a search has no partial answer)."""
    if not hasattr(backend, "forward_rows"):
        raise DecodekitError(f"search methods run several hypotheses side by side, which the {backend.kind} backend "
                             "does not offer: use the transformers backend (backend='hf')")
    started = time.perf_counter()
    stats = SearchStats()
    cache = backend.new_cache()
    if hasattr(search, "attach"):  # a search that needs the model's tokenizer (exact-extract's passage)
        search.attach(backend)
    search.start(prompt_ids, max_new_tokens, backend.eos_token_ids)
    if search.needs_hidden:  # every prompt position's hidden state: the prompt as a one-token start + a chain
        logits, hidden = backend.forward_hidden(prompt_ids[:1], Draft(prompt_ids[1:]), cache)  # type: ignore[attr-defined]
    else:
        logits, hidden = backend.forward(prompt_ids, Draft.empty(), cache), None
    logits = logits[-1:]
    stats.forward_s += time.perf_counter() - started
    while (rows := search.step(logits, hidden)) is not None:
        if should_stop is not None and should_stop():
            raise Stopped(f"stopped after {stats.steps} search steps")
        forward_started = time.perf_counter()
        cache.select(rows.parents)  # type: ignore[attr-defined]
        if rows.mixtures is not None:
            logits, hidden = backend.forward_mixtures(rows.mixtures, cache), None  # type: ignore[attr-defined]
        else:
            logits, hidden = backend.forward_rows(rows.tokens, cache, hidden=search.needs_hidden)
        stats.forward_s += time.perf_counter() - forward_started
        stats.steps += 1
        stats.rows += len(rows.tokens)
    stats.wall_s = time.perf_counter() - started
    return SearchResult(search.result(), stats)
