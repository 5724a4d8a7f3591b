"""Grammar-aligned sampling (ASAp, decodekit/constraints/aligned.py) against the exact target.

The language 0[01]{3}|1111 is small enough to enumerate: every string's probability under the
tiny model is the product of P(token | prefix) over its tokens (no EOS factor: the grammar stops
after four characters and the loop appends EOS), and normalising gives the model conditioned on
the grammar. The tiny model likes "1" first, then dislikes "111", so plain constrained sampling
puts ~0.6 of its mass on "1111" where the target puts ~0.08 (KL ≈ 1), and the three tokens the
grammar forces after "1" carry the factor ASAp must learn.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

import pytest
import torch
from tiny import tiny_backend, tiny_model

from decodekit import DecodekitError, sample_constrained
from decodekit.api import Decoder
from decodekit.constraints.aligned import (
    AlignedConstraint,
    ExpectedGrammaticality,
    Node,
    log_expected_grammaticality,
)
from decodekit.grammar import regex
from decodekit.sampling import SamplingConfig
from decodekit.types import Draft

REGEX = "0[01]{3}|1111"
PROMPT = [1, 2, 3]
CHECKPOINTS = (100, 400, 1600)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; conftest's per-test fixture comes too late for the
    module-scoped sampling runs below."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def backend():
    return tiny_backend("llama")


@pytest.fixture(scope="module")
def decoder(backend):
    return Decoder(backend, "ar")


@pytest.fixture(scope="module")
def language() -> list[str]:
    return [w for w in map("".join, itertools.product("01", repeat=4)) if re.fullmatch(REGEX, w)]


@pytest.fixture(scope="module")
def model_probs(backend, language) -> dict[str, torch.Tensor]:
    """Every prefix of the language -> the model's P(· | prompt + prefix) [vocab], temperature 1."""
    probs = {}
    with torch.no_grad():
        for word in language:
            ids = backend.encode(word)
            rows = torch.softmax(tiny_model("llama")(torch.tensor([PROMPT + ids])).logits[0].double(), -1)
            for i in range(len(word)):
                probs[word[:i]] = rows[len(PROMPT) - 1 + i]
    return probs


@pytest.fixture(scope="module")
def target(backend, language, model_probs) -> dict[str, float]:
    weight = {w: math.prod(float(model_probs[w[:i]][backend.encode(w[i])[0]]) for i in range(len(w)))
              for w in language}
    total = sum(weight.values())
    return {w: v / total for w, v in weight.items()}


def kl(sampled: dict[str, float], target: dict[str, float]) -> float:
    return sum(p * math.log(p / target[w]) for w, p in sampled.items() if p > 0)


def empirical(texts: list[str]) -> dict[str, float]:
    return {w: k / len(texts) for w, k in Counter(texts).items()}


def trie_distribution(trie: ExpectedGrammaticality, backend, language, model_probs) -> dict[str, float]:
    """What ASAp samples from next, by enumeration: Q(x | w) ∝ P(x | w) θ̂(w x) over the tokens the
    grammar allows after w (a forced token is the only one)."""
    ids = lambda text: backend.encode(text) if text else []
    out = {}
    for word in language:
        q = 1.0
        for i in range(len(word)):
            prefix = word[:i]
            allowed = sorted({w[i] for w in language if w.startswith(prefix)})
            weight = {c: float(model_probs[prefix][ids(c)[0]]) * trie.theta(ids(prefix + c)) for c in allowed}
            q *= weight[word[i]] / sum(weight.values())
        out[word] = q
    return out


@pytest.fixture(scope="module")
def runs(decoder, backend, language, model_probs):
    """1600 aligned samples in stages sharing one trie (seeds 0..1599, as one call would use),
    the trie's own distribution after 0, 10, 100, 400 and 1600 samples, and 1600 plain
    constrained samples."""
    trie = ExpectedGrammaticality()
    aligned, trie_dists = [], {0: trie_distribution(trie, backend, language, model_probs)}
    for stop in (10, *CHECKPOINTS):
        aligned += sample_constrained(prompt_ids=PROMPT, model=decoder, n=stop - len(aligned), regex=REGEX,
                                      seed=len(aligned), trie=trie)
        trie_dists[stop] = trie_distribution(trie, backend, language, model_probs)
    plain = sample_constrained(prompt_ids=PROMPT, model=decoder, n=CHECKPOINTS[-1], regex=REGEX, seed=0,
                               aligned=False)
    return trie, aligned, trie_dists, plain


def test_every_sample_matches_the_grammar(runs, language):
    _, aligned, _, plain = runs
    assert all(r.completed and r.text in language for r in aligned + plain)


def test_aligned_kl_falls_with_samples_and_beats_plain(runs, target):
    _, aligned, _, plain = runs
    asap = [kl(empirical([r.text for r in aligned[:n]]), target) for n in CHECKPOINTS]
    gcd = [kl(empirical([r.text for r in plain[:n]]), target) for n in CHECKPOINTS]
    assert asap[0] > 2 * asap[1] > 4 * asap[2], (asap, gcd)
    assert asap[-1] < gcd[-1] / 3, (asap, gcd)
    assert min(gcd) > 0.5, gcd  # the distortion this test is about


def test_trie_distribution_converges_to_the_target(runs, target, model_probs, backend):
    trie, _, trie_dists, _ = runs
    tv = {n: sum(abs(q - target[w]) for w, q in dist.items()) / 2 for n, dist in trie_dists.items()}
    assert tv[0] > 0.4, tv  # before any sample: plain constrained sampling
    # Not monotone early on: a sample through "0" lowers θ̂("0") while θ̂("1") is still 1, which
    # pushes more mass to "1111" until a sample visits "1". Once every prefix that matters has
    # been visited, θ̂ is exact there and Q is the target (up to fp32 and the KV-cache forward).
    assert all(tv[n] < 1e-5 for n in CHECKPOINTS), tv
    # θ̂(root) over-approximates, then reaches, the model's total mass on the language.
    total = sum(math.prod(float(model_probs[w[:i]][backend.encode(w[i])[0]]) for i in range(len(w))) for w in target)
    assert trie.root.theta == pytest.approx(total, rel=1e-4)


def test_forced_tokens_carry_the_models_probability(runs, backend, model_probs):
    """After "1" the grammar forces "111": aligned sampling takes each forced token in a step of
    its own, so θ̂("1") = P(1 | 1) P(1 | 11) P(1 | 111), the factor plain fast-forward never sees."""
    trie, aligned, _, plain = runs
    one = backend.encode("1")[0]
    node = trie.node([one])
    assert node is not None and node.allowed_count == 1
    expected = math.prod(float(model_probs["1" * i][one]) for i in (1, 2, 3))
    assert node.theta == pytest.approx(expected, rel=1e-4)
    assert expected < 0.2  # a factor that matters
    leaf = trie.node([one] * 4)
    assert leaf is not None and leaf.complete and leaf.theta == 1.0
    ones = [r for r in aligned if r.text == "1111"]
    assert ones and all(r.stats.steps == 4 and r.stats.forced_tokens == 1 for r in ones)  # only EOS forced
    assert all(r.stats.forced_tokens == 4 for r in plain if r.text == "1111")  # "111" + EOS fast-forwarded


def string_mass(word: str, temperature: float = 1.0, max_len: int = 4) -> float:
    """The model's probability of `word` at `temperature`, times P(EOS | word) where the model
    chooses to stop (word shorter than max_len), not where the grammar stops it."""
    backend = tiny_backend("llama")
    ids = backend.encode(word)
    with torch.no_grad():
        rows = torch.softmax(tiny_model("llama")(torch.tensor([PROMPT + ids])).logits[0].double() / temperature, -1)
    mass = math.prod(float(rows[len(PROMPT) - 1 + i, t]) for i, t in enumerate(ids))
    eos = next(iter(backend.eos_token_ids))
    return mass * (float(rows[len(PROMPT) - 1 + len(ids), eos]) if len(word) < max_len else 1.0)


def test_eos_the_model_chooses_counts_eos_the_grammar_imposes_does_not(decoder):
    """[01]{1,3}: after one or two characters EOS is allowed and drawn with the model's
    probability; after three the grammar stops and EOS is appended. θ̂(root) reaches the total
    mass of the language weighed that way."""
    trie = ExpectedGrammaticality()
    results = sample_constrained(prompt_ids=PROMPT, model=decoder, n=20, regex="[01]{1,3}", seed=0, trie=trie)
    assert {len(r.text) for r in results} >= {1, 3}  # both ends were seen
    words = ["".join(w) for n in (1, 2, 3) for w in itertools.product("01", repeat=n)]
    assert trie.root.theta == pytest.approx(sum(string_mass(w, max_len=3) for w in words), rel=1e-4)


def test_temperature_enters_the_distribution_the_trie_learns(decoder, backend):
    """At temperature T the target is softmax(logits / T) conditioned on the grammar."""
    trie = ExpectedGrammaticality()
    sample_constrained(prompt_ids=PROMPT, model=decoder, n=30, regex=REGEX, seed=0, temperature=0.5, trie=trie)
    one = backend.encode("1")[0]
    assert trie.node([one] * 4) is not None  # "1111" was drawn, so θ̂("1") is exact
    assert trie.theta([one]) == pytest.approx(string_mass("1111", 0.5) / string_mass("1", 0.5, max_len=1), rel=1e-4)


def test_a_sample_cut_short_leaves_its_last_prefix_unvisited(decoder):
    trie = ExpectedGrammaticality()
    results = sample_constrained(prompt_ids=PROMPT, model=decoder, n=3, regex=REGEX, seed=0, max_new_tokens=2,
                                 trie=trie)
    assert all(not r.completed and len(r.token_ids) == 2 for r in results)
    for r in results:
        first, last = trie.node(r.token_ids[:1]), trie.node(r.token_ids)
        assert first is not None and last is not None
        assert last.log_allowed is None and last.theta == 1.0  # GCD's guess
        assert first.log_allowed is not None and first.theta == pytest.approx(math.exp(first.log_allowed))


def test_update_by_hand():
    """root (allowed mass 0.6, 3 tokens) ─ a (P 0.4; allowed 0.5, 2 tokens) ─ b (P 0.25; allowed
    0.2, 1 token, not followed further); then root ─ c (P 0.15; allowed 0.1, 1 token)."""
    trie = ExpectedGrammaticality()
    root = trie.root
    root.log_allowed, root.allowed_count = math.log(0.6), 3
    a = root.children[1] = Node(log_prob=math.log(0.4), log_allowed=math.log(0.5), allowed_count=2)
    b = a.children[2] = Node(log_prob=math.log(0.25), log_allowed=math.log(0.2), allowed_count=1)
    trie.update([root, a, b])
    assert b.theta == pytest.approx(0.2)  # its one allowed child unvisited: θ̂ = 1 for it
    assert a.theta == pytest.approx((0.5 - 0.25) + 0.25 * 0.2)  # 0.3
    assert root.theta == pytest.approx((0.6 - 0.4) + 0.4 * 0.3)  # 0.32
    assert trie.theta([1, 2]) == pytest.approx(0.2) and trie.theta([1, 7]) == 1.0 and trie.samples == 1
    c = root.children[3] = Node(log_prob=math.log(0.15), log_allowed=math.log(0.1), allowed_count=1)
    trie.update([root, c])
    assert root.theta == pytest.approx(0.05 + 0.4 * 0.3 + 0.15 * 0.1)  # 0.185
    # A complete string has θ = 1 whatever was recorded.
    c.complete = True
    trie.update([root, c])
    assert c.theta == 1.0 and root.theta == pytest.approx(0.05 + 0.12 + 0.15)
    # Every allowed child visited: the unvisited mass is 0 exactly, not a rounding residue.
    assert math.exp(log_expected_grammaticality(math.log(0.3), 2, [(math.log(0.1), 0.0), (math.log(0.2), -math.inf)])) \
        == pytest.approx(0.1)
    assert log_expected_grammaticality(math.log(0.3), 1, [(math.log(0.3), -math.inf)]) == -math.inf


def test_aligned_sampling_is_seeded(decoder):
    run = lambda: [r.token_ids for r in sample_constrained(prompt_ids=PROMPT, model=decoder, n=6, regex=REGEX, seed=7)]
    assert run() == run()


@pytest.mark.parametrize(("options", "message"), [
    ({"n": 0}, "n must be an integer >= 1"),
    ({"n": 2.0}, "n must be an integer >= 1"),
    ({"n": True}, "n must be an integer >= 1"),
    ({"n": 2, "top_p": 0.9}, "turn off top_p"),
    ({"n": 2, "top_k": 5, "min_p": 0.1}, "turn off top_k, min_p"),
    ({"n": 2, "temperature": 0.0}, "temperature must be > 0"),
    ({"n": 2, "regex": None}, "needs a constraint"),
    ({"n": 2, "regex": None, "response_format": {"type": "text"}}, "needs a constraint"),
    ({"n": 2, "aligned": False, "trie": ExpectedGrammaticality()}, "trie= is for aligned sampling"),
])
def test_bad_input(decoder, options, message):
    kwargs = {"prompt_ids": PROMPT, "model": decoder, "regex": REGEX, **options}
    with pytest.raises(DecodekitError, match=message):
        sample_constrained(**kwargs)


def test_aligned_needs_ar_but_plain_takes_any_method(backend):
    drafting = Decoder(backend, "prompt-lookup")
    with pytest.raises(DecodekitError, match=r"needs method 'ar'.*prompt-lookup"):
        sample_constrained(prompt_ids=PROMPT, model=drafting, n=2, regex=REGEX, seed=0)
    plain = sample_constrained(prompt_ids=PROMPT, model=drafting, n=2, regex=REGEX, seed=0, aligned=False, top_p=0.9)
    assert all(r.completed for r in plain)


def test_aligned_constraint_refuses_drafts_and_filtered_sampling(decoder):
    grammar = decoder.constraint(regex(REGEX))
    constraint = AlignedConstraint(grammar, ExpectedGrammaticality(), SamplingConfig(temperature=1.0))
    with pytest.raises(DecodekitError, match="one token at a time"):
        constraint.trim(Draft([15, 16]))
    with pytest.raises(DecodekitError, match="turn off typical_p"):
        AlignedConstraint(grammar, ExpectedGrammaticality(), SamplingConfig(temperature=1.0, typical_p=0.5))
