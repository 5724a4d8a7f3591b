"""How many tokens to draft: the length that maximises expected tokens per unit of time.

A verification over n input tokens costs cost(n) (relative to a one-token step). If a draft's
first token is accepted with probability `first` and each later one, given the ones before it
were, with probability `cont`, a draft of k tokens commits on average

    1 + first * (1 + cont + ... + cont^(k-1))

tokens, and drafting pays only when that, divided by cost(1 + k), beats 1 / cost(1).
On a GPU cost(n) is nearly flat up to ~64 tokens, so long drafts are cheap; on a CPU it is not
(see DEFAULT_CPU_COST), and a long draft with poor acceptance is slower than no draft at all.
The backend measures cost(n) as it decodes (LatencyCurve.record), so the budget follows the
machine it runs on.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from decodekit.tree import ROOT, children

# Forward time by number of input tokens, relative to one token, measured on a 2-core EPYC with
# SmolLM2-135M fp32 and a 600-token cache. Used until the backend has measured its own.
DEFAULT_CPU_COST = {1: 1.0, 2: 1.13, 4: 1.25, 8: 1.55, 16: 1.8, 32: 2.4, 64: 3.7, 128: 6.0}

# Measurements needed at a size before they replace the prior there.
MIN_SAMPLES = 3


@dataclass
class LatencyCurve:
    """Relative forward cost by number of input tokens: a prior, refined by measurements."""

    prior: dict[int, float] = field(default_factory=lambda: dict(DEFAULT_CPU_COST))
    smoothing: float = 0.2
    _seconds: dict[int, float] = field(default_factory=dict)  # size -> moving average
    _counts: dict[int, int] = field(default_factory=dict)
    _cached: dict[int, float] | None = field(default=None, repr=False)  # points(), until the next record

    def record(self, num_tokens: int, seconds: float) -> None:
        """Add one timed forward over `num_tokens` tokens (decode steps only, not prefills)."""
        old = self._seconds.get(num_tokens)
        self._seconds[num_tokens] = seconds if old is None else old + self.smoothing * (seconds - old)
        self._counts[num_tokens] = self._counts.get(num_tokens, 0) + 1
        self._cached = None

    def points(self) -> dict[int, float]:
        """The curve's support: measured ratios where there are enough samples, else the prior.

        Cached between measurements: drafters query the curve dozens of times per step."""
        if self._cached is None:
            self._cached = self._compute_points()
        return self._cached

    def _compute_points(self) -> dict[int, float]:
        if self._counts.get(1, 0) < MIN_SAMPLES:
            return dict(self.prior)
        one = self._seconds[1]
        measured = {n: s / one for n, s in self._seconds.items() if self._counts[n] >= MIN_SAMPLES}
        top = max(measured)
        # Past the largest measured size, continue with the prior's shape from there.
        scale = measured[top] / _interpolate(self.prior, top)
        beyond = {n: c * scale for n, c in self.prior.items() if n > top}
        return {**measured, **beyond}

    def __call__(self, num_tokens: int) -> float:
        return _interpolate(self.points(), num_tokens)

    def seconds(self, num_tokens: int = 1) -> float | None:
        """Measured wall time of a forward over `num_tokens` tokens (moving average), if any:
        what a second model's forwards are priced against (a draft model's cost is relative
        to the target's one-token step)."""
        return self._seconds.get(num_tokens)


def _interpolate(points: dict[int, float], x: int) -> float:
    """Piecewise-linear through the points; flat below the first, extrapolated past the last."""
    sizes = sorted(points)
    if x <= sizes[0] or len(sizes) == 1:
        return points[sizes[0]] if x <= sizes[0] else points[sizes[0]] * x / sizes[0]
    i = min(bisect.bisect_left(sizes, x), len(sizes) - 1)
    lo, hi = sizes[i - 1], sizes[i]
    slope = (points[hi] - points[lo]) / (hi - lo)
    return points[lo] + slope * (x - lo)


@dataclass
class Budget:
    """What the loop tells a drafter: how many tokens fit, and what forwards cost."""

    max_tokens: int
    cost: Callable[[int], float]  # relative forward cost by number of input tokens

    def after(self, used: int) -> Budget:
        """What is left once `used` tokens of the tree are taken (composite drafting): fewer
        tokens, and each further one judged by its marginal cost on top of the tree so far."""
        if used == 0:
            return self
        base, start = self.cost, 1 + used
        return Budget(max(0, self.max_tokens - used), lambda n: base(used + n) / base(start))


def expected_tokens(first: float, cont: float, draft_len: int) -> float:
    """Mean tokens committed by one step with a draft of `draft_len` tokens.

    >>> expected_tokens(0.5, 0.5, 2)
    1.75
    """
    return 1 + first * sum(cont**i for i in range(draft_len))


def best_draft_length(first: float, cont: float, max_len: int, cost: Callable[[int], float]) -> int:
    """The draft length (0 = don't draft) with the most expected tokens per unit of cost."""
    best_len, best_rate = 0, 1.0 / cost(1)
    for k in range(1, max_len + 1):
        rate = expected_tokens(first, cont, k) / cost(1 + k)
        if rate > best_rate:
            best_len, best_rate = k, rate
    return best_len


def best_tree_size(node_probs: list[float], cost: Callable[[int], float]) -> int:
    """How many nodes of a tree (listed parents first) to draft: the prefix with the most
    expected tokens per unit of cost, where node i is accepted with probability node_probs[i]
    (so a prefix of n nodes commits 1 + sum(node_probs[:n]) tokens on average).

    >>> best_tree_size([0.9, 0.5, 0.01], LatencyCurve(prior={1: 1.0, 4: 1.3}))
    2
    """
    best, best_rate, expected = 0, 1.0 / cost(1), 1.0
    for size, prob in enumerate(node_probs, 1):
        expected += prob
        rate = expected / cost(1 + size)
        if rate > best_rate:
            best, best_rate = size, rate
    return best


def best_first(parents: list[int], node_probs: list[float]) -> tuple[list[int], list[float]]:
    """A tree's nodes in the order best_subtree grows them (always the likeliest node whose
    parent is already in), each with its probability capped by its parent's.

    >>> best_first([-1, -1, 0], [0.9, 0.05, 0.6])
    ([0, 2, 1], [0.9, 0.6, 0.05])
    """
    kids = children(parents)
    frontier = [(-node_probs[node], node) for node in kids.get(ROOT, [])]
    heapq.heapify(frontier)
    order, probs = [], []
    while frontier:
        negative, node = heapq.heappop(frontier)
        order.append(node)
        probs.append(-negative)
        for child in kids.get(node, []):
            # A node is never likelier than its parent: the path must get there first.
            heapq.heappush(frontier, (-min(node_probs[child], -negative), child))
    return order, probs


def best_subtree(parents: list[int], node_probs: list[float], cost: Callable[[int], float]) -> list[int]:
    """The nodes of a drafted tree worth verifying, ascending: grown best-first (always the
    likeliest node whose parent is already in, so the set stays a tree) and cut where expected
    tokens per unit of cost peak. `node_probs[i]`: P(node i is on the accepted path).

    A template's or trie's own order is not by value: a deep node on the likeliest branch can
    be worth more than a shallow sibling, and on a CPU every node must earn its cost.

    >>> best_subtree([-1, -1, 0], [0.9, 0.05, 0.6], LatencyCurve(prior={1: 1.0, 2: 1.1, 4: 1.3}))
    [0, 2]
    """
    order, probs = best_first(parents, node_probs)
    return sorted(order[: best_tree_size(probs, cost)])


# A probe may cost at most this many one-token steps: a failed one then wastes at most one step.
PROBE_COST = 2.0


def probe_length(max_len: int, cost: Callable[[int], float]) -> int:
    """How many tokens a probing draft sends: the length with the best upside (tokens per unit
    of cost if every drafted token were accepted) among those costing at most PROBE_COST steps,
    and at least 1. The curve's shape decides, not a constant: where 2 tokens cost as much as 8
    (fp32 on a CPU without AMX), one probe tests a whole 8-token copy for the price of one token.

    >>> probe_length(16, LatencyCurve(prior={1: 1.0, 2: 1.7, 8: 1.7, 16: 2.3}))
    11
    >>> probe_length(16, LatencyCurve(prior={1: 1.0, 2: 1.8, 4: 2.4}))  # steep: one token
    1
    """
    best, best_upside = 1, 0.0
    for k in range(1, max_len + 1):
        if k > 1 and cost(1 + k) > PROBE_COST:
            break
        upside = (1 + k) / cost(1 + k)
        if upside > best_upside:
            best, best_upside = k, upside
    return min(best, max_len)


@dataclass
class Probe:
    """When to send a draft that the estimate refuses, so that the estimate can be wrong only
    for a while.

    A refused draft is never verified, so it teaches nothing: an estimate that starts low (a bad
    first draft, a steep 2-token step on the machine's curve) would refuse long, accepted copies
    for good. After `wait` refusals in a row one draft is sent anyway (probe_length decides how
    much of it). A probe that gets a token through is followed by another at the next refusal,
    so the estimate climbs at the pace of the evidence; one none of whose tokens is accepted
    doubles the wait (at least `min_wait`, at most `max_wait`). A failed probe costs at most
    PROBE_COST - 1 steps, so where drafting never pays the overhead settles below
    1 / max_wait of the time (1.6%).

    >>> probe = Probe(min_wait=2)
    >>> [probe.refuse() for _ in range(4)]
    [False, True, False, True]
    >>> probe.observe(0); [probe.refuse() for _ in range(4)]
    [False, False, False, True]
    """

    min_wait: int = 4
    max_wait: int = 64
    wait: int = 0  # refusals before the next probe; starts at min_wait
    refused: int = 0
    probing: bool = False

    def __post_init__(self):
        self.wait = self.wait or self.min_wait

    def refuse(self) -> bool:
        """A draft was refused: True when it should go out as a probe instead."""
        self.refused += 1
        if self.refused < self.wait:
            return False
        self.refused, self.probing = 0, True
        return True

    def drafted(self) -> None:
        """A draft went out on its merits: the estimate pays again."""
        self.refused = 0

    def observe(self, num_accepted: int) -> None:
        """After verifying a draft: a probe's outcome sets the next wait."""
        if self.probing:
            self.wait = 1 if num_accepted else min(self.max_wait, max(self.min_wait, 2 * self.wait))
            self.probing = False


@dataclass
class Rate:
    """A probability learned online from Beta(1, 1), with old evidence fading by `decay`."""

    hits: float = 1.0
    misses: float = 1.0
    decay: float = 0.95  # per observation: the last ~20 drafts dominate
    forget_rate: float = 0.01  # per skipped opportunity: ~100 skips to drift back to the prior

    def __post_init__(self):
        self._prior = (self.hits, self.misses)

    @property
    def value(self) -> float:
        return self.hits / (self.hits + self.misses)

    def update(self, hits: int, misses: int) -> None:
        self.hits = self.decay * self.hits + hits
        self.misses = self.decay * self.misses + misses

    def forget(self) -> None:
        """Drift toward the prior: used while nothing is observed, so that a bad patch does
        not switch drafting off for good."""
        self.hits += self.forget_rate * (self._prior[0] - self.hits)
        self.misses += self.forget_rate * (self._prior[1] - self.misses)


@dataclass
class AcceptanceEstimate:
    """How drafts of one kind fare: P(first token accepted) and P(next accepted | previous)."""

    first: Rate = field(default_factory=Rate)
    cont: Rate = field(default_factory=Rate)
    probe: Probe = field(default_factory=Probe)

    def update(self, num_accepted: int, draft_len: int) -> None:
        self.probe.observe(num_accepted)
        self.first.update(int(num_accepted > 0), int(num_accepted == 0))
        if num_accepted > 0:
            # Runs are censored at the draft's end: a full acceptance has no miss.
            self.cont.update(num_accepted - 1, int(num_accepted < draft_len))

    def forget(self) -> None:
        self.first.forget()
        self.cont.forget()

    def best_length(self, max_len: int, cost: Callable[[int], float]) -> int:
        return best_draft_length(self.first.value, self.cont.value, max_len, cost)

    def trim(self, tokens: list[int], cost: Callable[[int], float]) -> list[int]:
        """Cut a chain draft to the length that pays; while nothing pays, drift to the prior
        and now and then send a probe (Probe)."""
        length = self.best_length(len(tokens), cost)
        if tokens and not length:
            self.forget()
            if self.probe.refuse():
                length = probe_length(len(tokens), cost)
        elif length:
            self.probe.drafted()
        return tokens[:length]


@dataclass
class Calibration:
    """Accepted tokens per predicted one, over recent drafts (decayed sums).

    Node acceptance estimates are biased: a node is drafted because its estimate is high, so
    the drafted ones were lucky more often than not (the winner's curse), and count-based
    rates are fitted to counts, not to what verification accepts. Scaling predictions by this
    factor keeps tree sizes honest.

    >>> c = Calibration(); c.update(predicted=2.0, actual=1.0); round(c.factor, 2)
    0.66
    """

    actual: float = 1.0
    predicted: float = 1.0
    decay: float = 0.95
    _pending: float = field(default=0.0, repr=False)  # predicted accepted tokens of the last selection
    probe: Probe = field(default_factory=Probe)

    @property
    def factor(self) -> float:
        return min(2.0, max(0.05, self.actual / self.predicted))

    def select(self, parents: list[int], node_probs: list[float], cost: Callable[[int], float]) -> list[int]:
        """best_subtree on calibrated probabilities; remembers what it predicted for `observe`.
        While no node pays, now and then the likeliest nodes go out as a probe (Probe)."""
        order, probs = best_first(parents, [self.factor * p for p in node_probs])
        size = best_tree_size(probs, cost)
        if node_probs and not size:
            self.forget()
            if self.probe.refuse():
                size = probe_length(len(order), cost)
        elif size:
            self.probe.drafted()
        kept = sorted(order[:size])
        self._pending = sum(node_probs[i] for i in kept)
        return kept

    def observe(self, num_accepted: int) -> None:
        """After verifying the last selection (a non-empty draft)."""
        self.probe.observe(num_accepted)
        self.update(self._pending, num_accepted)

    def update(self, predicted: float, actual: float) -> None:
        self.actual = self.decay * self.actual + actual
        self.predicted = self.decay * self.predicted + predicted

    def forget(self, rate: float = 0.01) -> None:
        """Drift back toward 1 while nothing is drafted: a low factor that cuts every tree
        would otherwise never see the evidence that could raise it."""
        self.actual += rate * (1.0 - self.actual)
        self.predicted += rate * (1.0 - self.predicted)
