"""Multi-draft speculative sampling, checked against the exact target distribution.

Verifiers: speculative sampling over a chain (Leviathan et al. 2023), over i.i.d. siblings
(SpecInfer's recursive residuals), Recursive Speculative Decoding's siblings drawn without
replacement (one and two levels), and SpecTr's K-SEQ over k i.i.d. sequences merged into a trie.
Each runs against draft models close to the target, far from it, and with no token in common.

The statistical checks use stats.distribution_gap (TV below THRESHOLD = 0.01, with the sample
size asserted to catch a 0.02 error); the tests play the drafter, drawing drafts with seeded
numpy generators. The exact checks inject uniforms and find, by bisection, the acceptance
threshold the verifier actually applies.
"""

import itertools

import numpy as np
import pytest
import torch
from stats import THRESHOLD, distribution_gap, total_variation

from decodekit.sampling import SamplingConfig, probabilities
from decodekit.tree import ROOT
from decodekit.types import Draft, VerifyResult
from decodekit.verify import inverse_cdf, verify_sampled
from decodekit.verify.k_seq import acceptance, beta, choose_rho, residual

SAMPLING = SamplingConfig(temperature=1.0)

# The target: a model with one token of memory over V = 6 tokens, P_ROOT after the committed
# text and P_NEXT[x] after token x. Tokens 3, 4 and 5 are ruled out everywhere (p = 0), so a
# draft model can put mass where the target has none, or (DISJOINT) all of it.
V = 6
P_ROOT = np.array([0.7, 0.2, 0.1, 0, 0, 0])
P_NEXT = np.array([[0.8, 0.2, 0, 0, 0, 0], [0, 0.8, 0.2, 0, 0, 0], [0.2, 0, 0.8, 0, 0, 0]] + [[1 / 3] * 3 + [0] * 3] * 3)
# Row 0: logits after the committed text; row 1 + x: after token x. log(0) = -inf, so
# probabilities() at temperature 1 gives back exactly these tables (to fp32 rounding).
LOGITS = torch.log(torch.tensor(np.vstack([P_ROOT, P_NEXT]), dtype=torch.float32))
EXACT_ROOT = probabilities(LOGITS[0], SAMPLING).double().numpy()  # [V]
EXACT_NEXT = probabilities(LOGITS[1:], SAMPLING).double().numpy()  # [V, V]
EXACT_PAIRS = (EXACT_ROOT[:, None] * EXACT_NEXT).ravel()  # first two tokens (x, y) as x * V + y

# Draft models: (q after the committed text, q after each token [V, V]).
UNIFORM = np.full(V, 1 / V)
FAR_ROOT = np.array([0.02, 0.08, 0.3, 0.2, 0.2, 0.2])  # over-proposes token 2 and ruled-out tokens
DRAFTERS = {
    "close": (0.8 * P_ROOT + 0.2 * UNIFORM, 0.8 * P_NEXT + 0.2 * UNIFORM),
    "far": (FAR_ROOT, np.array([np.roll([0.1, 0.05, 0.35, 0.2, 0.2, 0.1], shift) for shift in range(V)])),
    "disjoint": (np.array([0, 0, 0, 0.5, 0.3, 0.2]), np.tile([0, 0, 0, 0.2, 0.5, 0.3], (V, 1))),
}

# Sample sizes: about the smallest round numbers stats.distribution_gap accepts for these tables.
N_FIRST = 24_000
N_PAIRS = 36_000

NEAR_ONE = 1 - 1e-12
STRIDE = 3  # positions per trial: a verification here decides at most 3 tokens
STREAMS = 4  # stream 0 for the emitted token, 1..3 for up to three candidates


class CounterUniforms:
    """Counter-based randomness from a pre-drawn table (seeding a generator per draw would
    dominate the run time). Trial i owns positions [i * STRIDE, (i + 1) * STRIDE)."""

    def __init__(self, seed: int, trials: int):
        self.table = np.random.default_rng(seed).random((trials * STRIDE, STREAMS))

    def uniform(self, position: int, stream: int = 0) -> float:
        return float(self.table[position, stream])


class Scripted:
    """Injected uniforms: chosen values per stream, just below 1 for the others (a rejection
    wherever the acceptance probability is below 1). Records the streams asked for at each
    position, which tells which attempt, if any, accepted."""

    def __init__(self, values: dict[int, float]):
        self.values = values
        self.asked: dict[int, list[int]] = {}

    def uniform(self, position: int, stream: int = 0) -> float:
        self.asked.setdefault(position, []).append(stream)
        return self.values.get(stream, NEAR_ONE)


# ---- the drafter: numpy draws, vectorised over trials ------------------------------------------


def categorical(gen: np.random.Generator, rows: np.ndarray) -> np.ndarray:
    """One draw per row of `rows` [n, V] (rows need not be normalised)."""
    cdf = rows.cumsum(-1)
    u = gen.random(len(rows))[:, None] * cdf[:, -1:]
    return (u >= cdf).sum(-1)


def without_replacement(gen: np.random.Generator, rows: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """m draws per row without replacement, each from the row renormalised over the tokens not yet
    drawn. Returns tokens [n, m] and the distribution each was drawn from [n, m, V]. (Every draft
    model here gives mass to at least 3 tokens, so m <= 3 draws always exist.)"""
    remaining = rows.astype(np.float64).copy()
    tokens, used = [], []
    for _ in range(m):
        dist = remaining / remaining.sum(-1, keepdims=True)
        token = categorical(gen, dist)
        tokens.append(token)
        used.append(dist)
        remaining[np.arange(len(rows)), token] = 0.0
    return np.stack(tokens, 1), np.stack(used, 1)


def target_logits(tokens: list[int]) -> torch.Tensor:
    """[1 + n, V]: the root's row, then the row after each node's own token."""
    return LOGITS[[0] + [1 + token for token in tokens]]


def chain_drafts(drafter: str, n: int, seed: int) -> list[Draft]:
    """Two tokens: x1 ~ q_root, x2 ~ q_next[x1] (speculative sampling, one draft model)."""
    q_root, q_next = DRAFTERS[drafter]
    gen = np.random.default_rng(seed)
    first = categorical(gen, np.tile(q_root, (n, 1)))
    second = categorical(gen, q_next[first])
    rows = torch.tensor(np.stack([np.tile(q_root, (n, 1)), q_next[first]], 1), dtype=torch.float32)
    return [Draft(tokens=[a, b], draft_probs=q) for a, b, q in zip(first.tolist(), second.tolist(), rows)]


def iid_sibling_drafts(drafter: str, n: int, seed: int) -> list[Draft]:
    """Three children of the root drawn i.i.d. from q_root (duplicates are separate nodes)."""
    q_root, _ = DRAFTERS[drafter]
    tokens = np.random.default_rng(seed).choice(V, size=(n, 3), p=q_root)
    rows = torch.tensor(np.tile(q_root, (3, 1)), dtype=torch.float32)
    return [Draft(tokens=t, parents=[ROOT] * 3, draft_probs=rows) for t in tokens.tolist()]


def rsd_drafts(drafter: str, n: int, seed: int, levels: int = 1, rows_as_drawn: bool = True) -> list[Draft]:
    """Recursive Speculative Decoding: three children of the root drawn without replacement from
    q_root; with two levels, each of them gets two children drawn without replacement from
    q_next[its token]. Nodes are listed root children first:

        root ─┬─ r0 ─┬─ c00          tokens = [r0, r1, r2, c00, c01, c10, c11, c20, c21]
              │      └─ c01          parents = [-1, -1, -1, 0, 0, 1, 1, 2, 2]
              ├─ r1 ── (2 children)
              └─ r2 ── (2 children)

    Each node's draft_probs row is the distribution it was drawn from; rows_as_drawn=False gives
    every node the undepleted q instead, as if the siblings had been drawn i.i.d. (the mistake
    test_rsd_check_catches_iid_rows must catch)."""
    q_root, q_next = DRAFTERS[drafter]
    gen = np.random.default_rng(seed)
    roots, root_rows = without_replacement(gen, np.tile(q_root, (n, 1)), 3)  # [n, 3], [n, 3, V]
    tokens, rows, parents = [roots], [root_rows if rows_as_drawn else np.tile(q_root, (n, 3, 1))], [ROOT] * 3
    if levels == 2:
        for r in range(3):
            kids, kid_rows = without_replacement(gen, q_next[roots[:, r]], 2)
            tokens.append(kids)
            rows.append(kid_rows if rows_as_drawn else np.repeat(q_next[roots[:, r]][:, None], 2, 1))
            parents += [r, r]
    all_tokens = np.concatenate(tokens, 1).tolist()
    all_rows = torch.tensor(np.concatenate(rows, 1), dtype=torch.float32)
    return [Draft(tokens=t, parents=parents, draft_probs=q) for t, q in zip(all_tokens, all_rows)]


def k_seq_draft(sequences: list[tuple[int, int]], q_rows: torch.Tensor) -> Draft:
    """k sequences (x, y) merged into a trie (equal prefixes share a node), with draws[node]
    listing the node's children in the order the sequences reached them, repeats included.
    q_rows[0] is q after the committed text, q_rows[1 + x] after token x."""
    index: dict[tuple[int, ...], int] = {}
    tokens, parents, row_of, draws = [], [], [], {}

    def node(prefix: tuple[int, ...], parent: int) -> int:
        if prefix not in index:
            index[prefix] = len(tokens)
            tokens.append(prefix[-1])
            parents.append(parent)
            row_of.append(0 if parent == ROOT else 1 + prefix[-2])
        draws.setdefault(parent, []).append(index[prefix])
        return index[prefix]

    for x, y in sequences:
        node((x, y), node((x,), ROOT))
    return Draft(tokens=tokens, parents=parents, draft_probs=q_rows[row_of], rule="k-seq", draws=draws)


def k_seq_drafts(drafter: str, n: int, seed: int, k: int = 3) -> list[Draft]:
    """k i.i.d. sequences of two tokens per trial: x ~ q_root, y ~ q_next[x]."""
    q_root, q_next = DRAFTERS[drafter]
    gen = np.random.default_rng(seed)
    first = categorical(gen, np.tile(q_root, (n * k, 1))).reshape(n, k)
    second = categorical(gen, q_next[first.ravel()]).reshape(n, k)
    q_rows = torch.tensor(np.vstack([q_root, q_next]), dtype=torch.float32)
    return [k_seq_draft(list(zip(xs, ys)), q_rows) for xs, ys in zip(first.tolist(), second.tolist())]


# ---- running and reading trials -----------------------------------------------------------------


def run(drafts: list[Draft], seed: int, verifier=verify_sampled) -> list[list[int]]:
    """The committed tokens of one verification per draft, each trial with its own uniforms."""
    rng = CounterUniforms(seed, len(drafts))
    rows = np.zeros((len(drafts), 1 + max(len(d) for d in drafts)), dtype=np.int64)  # into LOGITS
    for i, d in enumerate(drafts):
        rows[i, 1 : 1 + len(d)] = np.add(d.tokens, 1)
    logits = LOGITS[torch.from_numpy(rows)]  # target_logits of every draft at once, padded
    return [verifier(d, logits[i, : 1 + len(d)], SAMPLING, rng, i * STRIDE).tokens for i, d in enumerate(drafts)]


def first_tokens(committed: list[list[int]]) -> np.ndarray:
    return np.array([tokens[0] for tokens in committed])


def first_pairs(committed: list[list[int]], seed: int) -> np.ndarray:
    """The first two emitted tokens as x * V + y. A verification that emitted x alone is completed
    with y ~ p(. | x) from an independent generator (the next decode step's draw), so the pairs
    must follow p_root(x) p(y | x) whatever the draft."""
    first = first_tokens(committed)
    completion = categorical(np.random.default_rng(seed), EXACT_NEXT[first])
    second = np.array([tokens[1] if len(tokens) > 1 else c for tokens, c in zip(committed, completion)])
    return first * V + second


def check_first_token(committed: list[list[int]]) -> None:
    assert distribution_gap(first_tokens(committed), EXACT_ROOT) < THRESHOLD


def check_pairs(committed: list[list[int]], seed: int) -> None:
    check_first_token(committed)
    assert distribution_gap(first_pairs(committed, seed), EXACT_PAIRS) < THRESHOLD


# ---- statistical checks: each verifier against each draft model ---------------------------------
# Disjoint draft models (no token in common with the target) are checked pathwise further down.


@pytest.mark.parametrize("drafter", ["close", "far"])
def test_chain_speculative_sampling(drafter):
    """Leviathan et al.: a two-token chain from q; the first token, and the first two jointly,
    follow the target."""
    check_pairs(run(chain_drafts(drafter, N_PAIRS, seed=1), seed=2), seed=3)


@pytest.mark.parametrize("drafter", ["close", "far"])
def test_iid_siblings_recursive_rejection(drafter):
    """SpecInfer: three root children drawn i.i.d. from q, each tried against the residual its
    rejected elder siblings leave."""
    check_first_token(run(iid_sibling_drafts(drafter, N_FIRST, seed=4), seed=5))


@pytest.mark.parametrize("drafter", ["close", "far"])
def test_rsd_siblings_without_replacement(drafter):
    """RSD: three root children drawn without replacement, each with the row it was drawn from."""
    check_first_token(run(rsd_drafts(drafter, N_FIRST, seed=6), seed=7))


@pytest.mark.parametrize("drafter", ["close", "far"])
def test_rsd_two_levels(drafter):
    """RSD at two depths (3 root children, 2 grandchildren each, all without replacement)."""
    check_pairs(run(rsd_drafts(drafter, N_PAIRS, seed=8, levels=2), seed=9), seed=10)


@pytest.mark.parametrize("drafter", ["close", "far"])
def test_k_seq(drafter):
    """SpecTr K-SEQ: three i.i.d. two-token sequences merged into a trie."""
    check_pairs(run(k_seq_drafts(drafter, N_PAIRS, seed=11), seed=12), seed=13)


DISJOINT_DRAFTS = {
    "chain": lambda n, seed: chain_drafts("disjoint", n, seed),
    "iid-siblings": lambda n, seed: iid_sibling_drafts("disjoint", n, seed),
    "rsd": lambda n, seed: rsd_drafts("disjoint", n, seed),
    "rsd-two-levels": lambda n, seed: rsd_drafts("disjoint", n, seed, levels=2),
    "k-seq": lambda n, seed: k_seq_drafts("disjoint", n, seed),
}


@pytest.mark.parametrize("verifier", DISJOINT_DRAFTS)
def test_disjoint_drafts_emit_what_plain_sampling_draws(verifier):
    """A draft model with no token in common with the target: nothing is ever accepted, and the
    emitted token is the one plain sampling (an empty draft) draws with the same uniform — a
    pathwise check, stronger than the distribution check (and cheaper: no sample-size bound).
    Only a uniform within 1e-6 of a step of the target's CDF may tip the other way (rounding:
    the residual is p renormalised)."""
    drafts = DISJOINT_DRAFTS[verifier](2000, 23)
    rng = CounterUniforms(24, len(drafts))
    p = torch.tensor(EXACT_ROOT)
    for trial, draft in enumerate(drafts):
        result = verify_sampled(draft, target_logits(draft.tokens), SAMPLING, rng, trial * STRIDE)
        plain = verify_sampled(Draft(), LOGITS[:1], SAMPLING, rng, trial * STRIDE)
        assert result.accepted == []
        u = rng.uniform(trial * STRIDE, 0)
        assert result.tokens == plain.tokens or inverse_cdf(p, u - 1e-6) != inverse_cdf(p, u + 1e-6)


# ---- the checks can fail: deliberately wrong verifiers are caught -------------------------------


def k_seq_without_rho(draft: Draft, logits: torch.Tensor, sampling: SamplingConfig, rng, position: int) -> VerifyResult:
    """Wrong on purpose: K-SEQ's candidates judged each as if it were the only draft, with
    min(1, p / q) (rho = 1) and the residual norm(max(p - q, 0)); emits the first token only."""
    assert draft.draws is not None and draft.draft_probs is not None
    p = probabilities(logits[0], sampling).double()
    drawn = draft.draws[ROOT]
    q = draft.draft_probs[drawn[0]].double()
    for attempt, child in enumerate(drawn, start=1):
        token = draft.tokens[child]
        if rng.uniform(position, attempt) < min(1.0, float(p[token] / q[token])):
            return VerifyResult([child], [token])
    return VerifyResult([], [inverse_cdf((p - q).clamp_min(0), rng.uniform(position, 0))])


def test_k_seq_check_catches_missing_rho():
    """With k = 3 and rho = 1 the accepted mass min(p, q) is counted up to three times and the
    residual does not make up for it: off by 0.22 in TV for the far drafter (closed form), which
    the check must see; the same drafts through decodekit's verifier pass (test_k_seq)."""
    p, q = EXACT_ROOT, DRAFTERS["far"][0]
    overlap = np.minimum(p, q)
    left = np.maximum(p - q, 0)
    k, b = 3, overlap.sum()
    emitted = overlap * (1 - (1 - b) ** k) / b + (1 - b) ** k * left / left.sum()
    assert total_variation(emitted, p) >= 0.02
    committed = run(k_seq_drafts("far", N_FIRST, seed=14), seed=15, verifier=k_seq_without_rho)
    assert distribution_gap(first_tokens(committed), p) >= THRESHOLD


def recursive_emission(p: np.ndarray, tokens: tuple[int, ...], rows: list[np.ndarray]) -> np.ndarray:
    """What recursive rejection over children (tokens, rows) emits, in closed form."""
    emitted, reach, target = np.zeros_like(p), 1.0, p
    for token, q in zip(tokens, rows):
        accept = min(1.0, target[token] / q[token])
        emitted[token] += reach * accept
        reach *= 1 - accept
        left = np.maximum(target - q, 0)
        target = left / left.sum() if left.sum() > 0 else target
    return emitted + reach * target


def test_rsd_check_catches_iid_rows():
    """RSD siblings verified as if i.i.d. from q (every row the undepleted q): 0.063 off in TV for
    the far drafter (exact, by enumerating the ordered draws), and the check sees it."""
    p, q = EXACT_ROOT, DRAFTERS["far"][0]
    emitted = np.zeros(V)
    for drawn in itertools.permutations(range(V), 3):
        weight, remaining = 1.0, q.copy()
        for token in drawn:
            weight *= remaining[token] / remaining.sum()
            remaining[token] = 0
        emitted += weight * recursive_emission(p, drawn, [q] * 3)
    assert total_variation(emitted, p) >= 0.02
    committed = run(rsd_drafts("far", N_FIRST, seed=16, rows_as_drawn=False), seed=17)
    assert distribution_gap(first_tokens(committed), p) >= THRESHOLD


# ---- exact checks with injected uniforms ---------------------------------------------------------

# A small target and draft model for the exact checks (temperature 1 returns P_SMALL).
P_SMALL = np.array([0.5, 0.25, 0.15, 0.1])
Q_SMALL = np.array([0.2, 0.45, 0.05, 0.3])
LOGITS_SMALL = torch.log(torch.tensor(P_SMALL, dtype=torch.float32)).expand(5, 4)  # the root's row and 4 nodes' rows
EXACT_SMALL = probabilities(LOGITS_SMALL[0], SAMPLING).double().numpy()


def root_draft(tokens: list[int], q: np.ndarray, rule: str) -> Draft:
    """Children of the root drawn from q (K-SEQ: as k one-token sequences)."""
    rows = torch.tensor(np.tile(q, (len(tokens), 1)), dtype=torch.float32)
    if rule == "k-seq":
        return k_seq_root_draft(tokens, rows[0])
    return Draft(tokens=tokens, parents=[ROOT] * len(tokens), draft_probs=rows)


def k_seq_root_draft(tokens: list[int], q: torch.Tensor) -> Draft:
    """k one-token sequences: repeats share a node and appear in draws[ROOT] once per draw."""
    nodes = list(dict.fromkeys(tokens))
    draws = {ROOT: [nodes.index(token) for token in tokens]}
    return Draft(tokens=nodes, parents=[ROOT] * len(nodes), draft_probs=q.expand(len(nodes), -1), rule="k-seq", draws=draws)


def accepts(draft: Draft, logits: torch.Tensor, uniforms: dict[int, float]) -> int | None:
    """The attempt (1-based: the stream of its uniform) at which the verifier accepts a root child
    under the given uniforms (other streams just below 1), or None if it accepts none."""
    rng = Scripted(uniforms)
    result = verify_sampled(draft, logits, SAMPLING, rng, 0)
    return max(rng.asked[0]) if result.accepted else None


def threshold(draft: Draft, logits: torch.Tensor, attempt: int, iterations: int = 40) -> float:
    """The acceptance probability the verifier applies at `attempt`, found by bisection on that
    attempt's uniform with the earlier attempts' uniforms just below 1 (rejections wherever a
    rejection is possible)."""
    lo, hi = 0.0, NEAR_ONE  # the attempt accepts at u = lo and not at u = hi
    if accepts(draft, logits, {attempt: hi}) == attempt:
        return 1.0
    if accepts(draft, logits, {attempt: lo}) != attempt:
        return 0.0
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if accepts(draft, logits, {attempt: mid}) == attempt else (lo, mid)
    return 0.5 * (lo + hi)


def rho_by_definition(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """Independent of k_seq.choose_rho: plain bisection for the smallest rho in [1, k] with
    (1 - (1-beta)^k) / beta <= rho, beta(rho) = sum min(q, p / rho)."""
    b = lambda rho: np.minimum(q, p / rho).sum()
    ok = lambda rho: b(rho) == 0 or (1 - (1 - b(rho)) ** k) / b(rho) <= rho + 1e-12
    if ok(1.0):
        return 1.0
    lo, hi = 1.0, float(k)
    for _ in range(60):
        lo, hi = (lo, (lo + hi) / 2) if ok((lo + hi) / 2) else ((lo + hi) / 2, hi)
    return hi


@pytest.mark.parametrize("token", range(4))
def test_speculative_sampling_acceptance_boundary(token):
    """One sampled draft token x is accepted iff u < min(1, p(x) / q(x)): just below, accepted;
    just above, rejected."""
    draft = Draft(tokens=[token], draft_probs=torch.tensor(Q_SMALL, dtype=torch.float32)[None])
    bound = min(1.0, P_SMALL[token] / Q_SMALL[token])
    assert accepts(draft, LOGITS_SMALL, {1: bound * (1 - 1e-5)}) == 1
    assert accepts(draft, LOGITS_SMALL, {1: bound * (1 + 1e-5) if bound < 1 else NEAR_ONE}) == (1 if bound == 1 else None)


@pytest.mark.parametrize("tokens", [[1, 3, 0], [3, 1, 2], [2, 1, 1]])
def test_k_seq_acceptance_boundary(tokens):
    """K-SEQ with k = 3: each candidate is accepted iff its uniform is below
    min(1, p(x) / (rho q(x))), with rho from choose_rho (equal to rho by definition); a rejected
    candidate hands over to the next."""
    k = len(tokens)
    rho = choose_rho(P_SMALL, Q_SMALL, k)
    assert 1 < rho < k and rho == pytest.approx(rho_by_definition(P_SMALL, Q_SMALL, k), abs=1e-9)
    draft = root_draft(tokens, Q_SMALL, "k-seq")
    for attempt, token in enumerate(tokens, start=1):  # the attempts before it get u just below 1
        bound = acceptance(P_SMALL[token], Q_SMALL[token], rho)
        assert bound == min(1.0, P_SMALL[token] / (rho * Q_SMALL[token]))
        assert accepts(draft, LOGITS_SMALL, {attempt: bound * (1 - 1e-5)}) == attempt
        if bound == 1:  # accepted whatever its uniform: the later candidates are never tried
            assert accepts(draft, LOGITS_SMALL, {attempt: NEAR_ONE}) == attempt
            break
        assert accepts(draft, LOGITS_SMALL, {attempt: bound * (1 + 1e-5)}) != attempt
    else:
        pytest.fail("every candidate rejectable: pick tokens that reach a sure acceptance")


def test_speculative_sampling_acceptance_rate_is_overlap():
    """Over x ~ q, the acceptance probability the verifier realises sums to sum_x min(p(x), q(x))."""
    rows = torch.tensor(Q_SMALL, dtype=torch.float32)[None]
    realised = sum(Q_SMALL[x] * threshold(Draft(tokens=[x], draft_probs=rows), LOGITS_SMALL, 1) for x in range(4))
    assert realised == pytest.approx(np.minimum(P_SMALL, Q_SMALL).sum(), abs=1e-6)


def exact_root_emission(draft: Draft, iterations: int = 30) -> tuple[np.ndarray, float]:
    """The verifier's first-token distribution for one draft of root children, exactly, and the
    probability that it accepts a child: the thresholds of successive attempts (bisection on their
    uniforms), then, after all rejections, the stream-0 interval of each token (bisection on the
    steps of the inverse CDF)."""
    kids = draft.draws[ROOT] if draft.draws is not None else list(range(len(draft)))
    emitted, reach = np.zeros(len(P_SMALL)), 1.0
    for attempt, child in enumerate(kids, start=1):
        accept = threshold(draft, LOGITS_SMALL, attempt, iterations)
        emitted[draft.tokens[child]] += reach * accept
        reach *= 1 - accept
    if reach == 0:
        return emitted, 1.0
    token_at = lambda u: verify_sampled(draft, LOGITS_SMALL, SAMPLING, Scripted({0: u}), 0).tokens[0]
    edges = [0.0]
    for token in range(len(P_SMALL) - 1):  # the u from which the emitted token exceeds `token`
        lo, hi = edges[-1], 1.0
        if token_at(NEAR_ONE) <= token:
            edges.append(1.0)
            continue
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if token_at(mid) <= token else (lo, mid)
        edges.append(hi)
    return emitted + reach * np.diff(edges + [1.0]), 1 - reach


@pytest.mark.parametrize("k", [1, 2, 3])
def test_k_seq_exact_acceptance_rate_and_distribution(k):
    """All k-tuples of i.i.d. draws from q on a 4-token vocabulary, weighted by their probability:
    the acceptance rate the verifier realises is 1 - (1 - beta(rho))^k (for k = 1, sum min(p, q):
    speculative sampling), and what it emits is exactly p."""
    rate, emitted = 0.0, np.zeros(4)
    for tokens in itertools.product(range(4), repeat=k):
        weight = float(np.prod(Q_SMALL[list(tokens)]))
        first, accepted = exact_root_emission(root_draft(list(tokens), Q_SMALL, "k-seq"))
        rate += weight * accepted
        emitted += weight * first
    rho = rho_by_definition(P_SMALL, Q_SMALL, k)
    assert rate == pytest.approx(1 - (1 - np.minimum(Q_SMALL, P_SMALL / rho).sum()) ** k, abs=1e-6)
    if k == 1:
        assert rate == pytest.approx(np.minimum(P_SMALL, Q_SMALL).sum(), abs=1e-6)
    else:
        assert rate > np.minimum(P_SMALL, Q_SMALL).sum() + 0.05  # more drafts, more acceptance
    assert emitted == pytest.approx(EXACT_SMALL, abs=1e-6)


@pytest.mark.parametrize("scheme", ["iid", "without-replacement"])
def test_recursive_rejection_exact_distribution(scheme):
    """Three root children, i.i.d. or without replacement (each row the distribution it was drawn
    from), over every ordered draw with its probability: the verifier emits exactly p."""
    emitted = np.zeros(4)
    draws = itertools.product(range(4), repeat=3) if scheme == "iid" else itertools.permutations(range(4), 3)
    for tokens in draws:
        weight, remaining, rows = 1.0, Q_SMALL.copy(), []
        for token in tokens:
            rows.append(remaining / remaining.sum())
            weight *= rows[-1][token]
            if scheme != "iid":
                remaining[token] = 0
        draft = Draft(tokens=list(tokens), parents=[ROOT] * 3, draft_probs=torch.tensor(np.array(rows), dtype=torch.float32))
        emitted += weight * exact_root_emission(draft)[0]
    assert emitted == pytest.approx(EXACT_SMALL, abs=1e-6)


# ---- a drafter equal to the target is always accepted -------------------------------------------


def test_identical_drafter_is_always_accepted():
    """q = p (the very rows probabilities() gives): the chain's two tokens, K-SEQ's two levels
    (rho = 1 then) and RSD's first child are accepted in every trial, even with every uniform
    just below 1: the acceptance probability is 1, not merely close to it."""
    exact = torch.stack([probabilities(row, SAMPLING) for row in LOGITS])  # [1 + V, V], row by row as verify does
    assert choose_rho(exact[0].numpy(), exact[0].numpy(), 3) == 1.0
    gen = np.random.default_rng(18)
    rng = Scripted({})
    for trial in range(300):
        x = int(categorical(gen, EXACT_ROOT[None])[0])
        y = int(categorical(gen, EXACT_NEXT[x][None])[0])
        chain = Draft(tokens=[x, y], draft_probs=exact[[0, 1 + x]])
        assert verify_sampled(chain, target_logits([x, y]), SAMPLING, rng, 3 * trial).accepted == [0, 1]

        xs = categorical(gen, np.tile(EXACT_ROOT, (3, 1))).tolist()
        ys = categorical(gen, EXACT_NEXT[xs]).tolist()
        trie = k_seq_draft(list(zip(xs, ys)), exact)
        result = verify_sampled(trie, target_logits(trie.tokens), SAMPLING, rng, 3 * trial + 1)
        assert result.accepted == [trie.draws[ROOT][0], trie.draws[trie.draws[ROOT][0]][0]]

        first = int(categorical(gen, EXACT_ROOT[None])[0])
        rest = EXACT_ROOT.copy()
        rest[first] = 0
        rows = torch.stack([exact[0], torch.tensor(rest / rest.sum(), dtype=torch.float32)])
        second = int(categorical(gen, rows[1:].double().numpy())[0])
        rsd = Draft(tokens=[first, second], parents=[ROOT, ROOT], draft_probs=rows)
        assert verify_sampled(rsd, target_logits(rsd.tokens), SAMPLING, rng, 3 * trial + 2).accepted == [0]


# ---- K-SEQ's pieces ------------------------------------------------------------------------------


def test_k_seq_residual_is_a_distribution_and_restores_p():
    """Random p and q (some tokens zero in either) and k in 1..4: rho is the smallest feasible
    value in [1, k], the residual is non-negative and sums to 1, and acceptance plus residual give
    back p: min(q, p/rho) c + (1-beta)^k p_res = p, c = (1 - (1-beta)^k) / beta."""
    gen = np.random.default_rng(20)
    for case in range(1500):
        size = int(gen.integers(2, 9))
        p = gen.random(size) ** 2 * (gen.random(size) < 0.8)
        q = p.copy() if case % 10 == 0 else gen.random(size) ** 2 * (gen.random(size) < 0.8)
        if p.sum() == 0 or q.sum() == 0:
            continue
        p, q, k = p / p.sum(), q / q.sum(), int(gen.integers(1, 5))
        rho = choose_rho(p, q, k)
        assert 1 <= rho <= k and rho == pytest.approx(rho_by_definition(p, q, k), abs=1e-9)
        res = residual(p, q, rho, k)
        assert (res >= 0).all() and res.sum() == pytest.approx(1, abs=1e-12)
        b = beta(p, q, rho)
        if b == 0:  # disjoint: the token comes from p
            assert np.minimum(p, q).sum() == 0 and res == pytest.approx(p)
            continue
        c = (1 - (1 - b) ** k) / b
        assert c <= rho + 1e-9 and (rho == 1 or c > rho - 1e-6)  # feasible, and nothing smaller is
        assert np.minimum(q, p / rho) * c + (1 - b) ** k * res == pytest.approx(p, abs=1e-9)


def test_k_seq_with_one_sequence_is_speculative_sampling():
    """k = 1: the same tokens as the recursive rule on the same chain, with the same uniforms."""
    drafts = chain_drafts("far", 2000, seed=21)
    rng = CounterUniforms(22, len(drafts))
    q_rows = torch.tensor(np.vstack(DRAFTERS["far"]), dtype=torch.float32)
    for trial, chain in enumerate(drafts):
        trie = k_seq_draft([tuple(chain.tokens)], q_rows)
        logits = target_logits(chain.tokens)
        expected = verify_sampled(chain, logits, SAMPLING, rng, trial * STRIDE)
        assert verify_sampled(trie, logits, SAMPLING, rng, trial * STRIDE) == expected
