"""Strategies that reshape the distribution: each against a direct computation of its
definition, and each with drafters against itself without one (strategies/base.py)."""

from __future__ import annotations

import math

import pytest
import torch
from tiny import ARCHITECTURES, byte_tokenizer, tiny_backend, tiny_model

from decodekit.api import Decoder
from decodekit.errors import DecodekitError
from decodekit.models.hf import HFBackend
from decodekit.sampling import SamplingConfig
from decodekit.strategies import ContrastiveDecoding, Lol, Mirostat
from decodekit.strategies.base import row_paths
from decodekit.strategies.contrastive import contrast
from decodekit.strategies.dola import candidate_layers, relative_top_contrast
from decodekit.strategies.mirostat import zipf_top_k
from decodekit.strategies.uscd import drop_examples, selective_contrast
from decodekit.types import Draft, VerifyResult

PROMPT = list(range(10, 40)) * 2  # repeats itself, so prompt lookup finds drafts
DRAFTERS = ["prompt-lookup", "token-recycling", "lookahead"]


def expert(arch: str = "llama") -> HFBackend:
    return tiny_backend(arch, seed=0, num_layers=4)


def amateur(arch: str = "llama") -> HFBackend:
    """A different (smaller) random model with the expert's byte tokenizer."""
    return tiny_backend(arch, seed=1, num_layers=2)


def decoder(method: str, drafter: str | None = None, arch: str = "llama", **options) -> Decoder:
    target = expert(arch)
    if method in ("contrastive-decoding", "lol"):
        made = Decoder(target, "ar")
        strategy = ContrastiveDecoding(**options) if method == "contrastive-decoding" else Lol(**options)
        strategy.attach(target, amateur(arch))
        made.strategy = strategy
        if drafter:
            made.drafter = Decoder(target, drafter).drafter
        return made
    return Decoder(target, method, drafter=drafter, **options)


# --- with drafters: the same ids, in fewer steps -------------------------------------------------

GREEDY_STRATEGIES = [
    ("contrastive-decoding", {}),
    ("dola", {}),
    ("dola", {"dola_layers": "low", "repetition_penalty": 1.0}),
    ("lol", {}),
    ("uscd", {"lame_prompt": "x", "threshold": 1.0}),  # threshold 1: every row is contrasted
]


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize(("method", "options"), GREEDY_STRATEGIES, ids=lambda v: str(v))
def test_greedy_strategies_give_the_same_ids_with_a_drafter(arch, method, options):
    plain = decoder(method, None, arch, **options).generate(prompt_ids=PROMPT, max_new_tokens=40)
    assert plain.stats.tau == 1.0
    taus = []
    for drafter in DRAFTERS:
        fast = decoder(method, drafter, arch, **options).generate(prompt_ids=PROMPT, max_new_tokens=40)
        assert fast.token_ids == plain.token_ids, f"{method} with {drafter}"
        taus.append(fast.stats.tau)
    assert max(taus) > 1.0, f"no drafter's draft was ever accepted under {method}: the test shows nothing"


def test_a_strategy_changes_the_output():
    """The strategies really reshape: their ids differ from plain greedy's on the same prompt."""
    plain = Decoder(expert(), "ar").generate(prompt_ids=PROMPT, max_new_tokens=40).token_ids
    for method, options in GREEDY_STRATEGIES[:4]:
        assert decoder(method, **options).generate(prompt_ids=PROMPT, max_new_tokens=40).token_ids != plain, method


@pytest.mark.parametrize("version", [1, 2])
def test_mirostat_samples_the_same_tokens_with_a_drafter(version):
    """Seeded sampling draws the same uniforms per position, so the drafted run must equal the
    plain one token for token, μ included."""
    plain = Decoder(expert(), "mirostat", version=version)
    reference = plain.generate(prompt_ids=PROMPT, max_new_tokens=40, temperature=1.0, seed=5)
    for drafter in DRAFTERS:
        fast = Decoder(expert(), "mirostat", drafter=drafter, version=version)
        result = fast.generate(prompt_ids=PROMPT, max_new_tokens=40, temperature=1.0, seed=5)
        assert result.token_ids == reference.token_ids
        assert fast.strategy.mu == pytest.approx(plain.strategy.mu, abs=1e-5)


# --- each strategy against its definition --------------------------------------------------------

def test_contrastive_decoding_scores_by_hand():
    expert_probs = torch.tensor([0.6, 0.3, 0.05, 0.05])
    amateur_probs = torch.tensor([0.7, 0.1, 0.1, 0.1])
    scores = contrast(expert_probs.log(), amateur_probs.log(), alpha=0.1)
    # plausible: p_expert >= 0.1 * 0.6 = 0.06, so tokens 0 and 1 only
    assert scores[0].item() == pytest.approx(math.log(0.6 / 0.7), abs=1e-6)
    assert scores[1].item() == pytest.approx(math.log(0.3 / 0.1), abs=1e-6)
    assert scores[2].item() == -math.inf and scores[3].item() == -math.inf
    assert int(scores.argmax()) == 1  # greedy would pick 0: the amateur likes it too much
    # amateur temperature: 0.5 sharpens the amateur before the contrast
    sharp = contrast(expert_probs.log(), amateur_probs.log(), alpha=0.1, amateur_temperature=0.5)
    amateur_sharp = torch.softmax(amateur_probs.log() / 0.5, -1)
    assert sharp[1].item() == pytest.approx(math.log(0.3) - math.log(float(amateur_sharp[1])), abs=1e-6)


def _scores_for_judging(strategy, rows: torch.Tensor):
    """tie_scores on hand-made rows; each model's tolerance is 0.01 x its largest |logit|."""
    return strategy.tie_scores([1], rows, lambda row: 0.01 * float(row[torch.isfinite(row)].abs().max()))


def test_contrastive_decoding_judges_ties_on_both_models_and_the_cut():
    strategy = ContrastiveDecoding()
    expert_logits = torch.tensor([[0.0, -0.7, math.log(0.1) - 0.005, -9.0]])  # token 2 sits just below the cut
    strategy._amateur_logits = torch.tensor([[0.0, -2.0, -5.0, 1.0]])
    scores, tolerance = _scores_for_judging(strategy, expert_logits)
    assert tolerance == pytest.approx(0.01 * 9.0 + 0.01 * 5.0)  # the expert's plus the amateur's
    assert math.isfinite(scores[2]), "a token within the expert's tolerance of the cut may be plausible"
    assert scores[3].item() == -math.inf, "a token far below the cut is not"
    exact = contrast(expert_logits, strategy._amateur_logits, 0.1)[0]
    assert exact[2].item() == -math.inf and torch.equal(scores[:2], exact[:2])


def test_lol_judges_ties_on_all_four_rows():
    strategy = Lol(fusion_weight=0.5)
    final = torch.tensor([[0.0, -1.0, -20.0]])
    strategy._amateur_final = torch.tensor([[0.0, -2.0, -4.0]])
    strategy._expert_lower, strategy._amateur_lower = torch.tensor([[3.0, 0.0, 0.0]]), torch.tensor([[0.0, 6.0, 0.0]])
    scores, tolerance = _scores_for_judging(strategy, final)
    assert tolerance == pytest.approx(0.01 * (20 + 4) + 0.5 * 0.01 * (3 + 6))
    assert torch.equal(scores[:2], strategy.reshape([1], Draft.empty(), final)[0][:2])


def test_a_strategy_without_its_own_rule_judges_on_its_scores():
    strategy = Mirostat()
    rows = torch.tensor([[4.0, -2.0, 1.0]])
    scores, tolerance = _scores_for_judging(strategy, rows)
    assert torch.equal(scores, strategy.reshape([1], Draft.empty(), rows)[0]) and tolerance == pytest.approx(0.04)


def _direct_contrastive_decoding(expert_model, amateur_model, prompt, steps, alpha=0.1):
    """Contrastive decoding written out: full forwards of both models, no cache, no drafts."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            e = torch.log_softmax(expert_model(torch.tensor([ids])).logits[0, -1].float(), -1)
            a = torch.log_softmax(amateur_model(torch.tensor([ids])).logits[0, -1].float(), -1)
            score = torch.where(e >= e.max() + math.log(alpha), e - a, torch.tensor(-math.inf))
            ids.append(int(score.argmax()))
    return ids[len(prompt):]


def test_contrastive_decoding_equals_a_direct_computation_from_two_models():
    ours = decoder("contrastive-decoding").generate(prompt_ids=PROMPT, max_new_tokens=20).token_ids
    assert ours == _direct_contrastive_decoding(tiny_model("llama", 0, 4), tiny_model("llama", 1, 2), PROMPT, 20)


def test_mirostat_v2_mu_trajectory_by_hand():
    """p = [1/2, 1/4, 1/8, 1/8]: surprises 1, 2, 3, 3 bits. τ = 1, η = 0.5, μ₀ = 2.
    step 1: keep surprise <= 2 -> {0, 1}, p~ = [2/3, 1/3]; token 1: s = log2 3;  μ = 2 − 0.5(log2 3 − 1)
    step 2: μ ≈ 1.708 keeps {0}, p~ = [1];            token 0: s = 0;        μ += 0.5
    step 3: μ ≈ 2.208 keeps {0, 1};                   token 0: s = log2 1.5; μ −= 0.5(log2 1.5 − 1)"""
    logits = torch.tensor([[0.5, 0.25, 0.125, 0.125]]).log()
    mirostat = Mirostat(version=2, tau=1.0, eta=0.5)
    mirostat.start([1], SamplingConfig(temperature=1.0))
    expected_mu = [2.0]
    expected_mu.append(expected_mu[-1] - 0.5 * (math.log2(3) - 1))
    expected_mu.append(expected_mu[-1] - 0.5 * (0 - 1))
    expected_mu.append(expected_mu[-1] - 0.5 * (math.log2(1.5) - 1))
    expected_kept = [[0, 1], [0], [0, 1]]
    for step, token in enumerate([1, 0, 0]):
        assert mirostat.mu == pytest.approx(expected_mu[step])
        reshaped = mirostat.reshape([1], Draft(), logits)
        assert torch.isfinite(reshaped[0]).nonzero().flatten().tolist() == expected_kept[step]
        mirostat.commit(Draft(), VerifyResult([], [token]))
    assert mirostat.mu == pytest.approx(expected_mu[3])


def test_mirostat_carries_mu_down_a_draft_tree():
    """A tree's rows get the μ that one-token decoding holds after the path to them."""
    logits = torch.tensor([0.5, 0.25, 0.125, 0.125]).log().repeat(4, 1)
    draft = Draft([1, 0, 0], [-1, 0, -1])  # root -> 1 -> 0, and root -> 0
    tree = Mirostat(version=2, tau=1.0, eta=0.5)
    tree.start([1], SamplingConfig(temperature=1.0))
    tree.reshape([1], draft, logits)
    for row, path in enumerate(row_paths(draft)):
        one = Mirostat(version=2, tau=1.0, eta=0.5)
        one.start([1], SamplingConfig(temperature=1.0))
        for token in path:
            one.reshape([1], Draft(), logits[:1])
            one.commit(Draft(), VerifyResult([], [token]))
        assert tree._row_mu[row] == pytest.approx(one.mu), f"row {row}, path {path}"
    tree.commit(draft, VerifyResult([0, 1], [1, 0, 1]))  # accepted root -> 1 -> 0, then the model's 1
    one = Mirostat(version=2, tau=1.0, eta=0.5)
    one.start([1], SamplingConfig(temperature=1.0))
    for token in [1, 0, 1]:
        one.reshape([1], Draft(), logits[:1])
        one.commit(Draft(), VerifyResult([], [token]))
    assert tree.mu == pytest.approx(one.mu)


def test_mirostat_v1_recovers_the_zipf_exponent():
    """On an exact Zipf distribution the fit finds its exponent s, and k follows
    k = ((ε̂ 2^μ) / (1 − N^−ε̂))^(1/ŝ) with ε̂ = s − 1."""
    vocab, s, mu = 1000, 1.3, 6.0
    probs = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64) ** s
    log_probs = torch.log(probs / probs.sum())
    expected = int(((s - 1) * 2 ** mu / (1 - vocab ** -(s - 1))) ** (1 / s))
    assert zipf_top_k(log_probs, mu) == expected
    assert zipf_top_k(log_probs, mu + 2) > expected  # more room for surprise keeps more tokens


def _probs(values):
    return torch.tensor(values, dtype=torch.float32)


def test_epsilon_sampling_keeps_the_tokens_at_or_above_epsilon():
    probs = _probs([0.5, 0.3, 0.1995, 0.0005])
    kept = torch.isfinite(_filtered(probs, epsilon_cutoff=0.001)).nonzero().flatten().tolist()
    assert kept == [0, 1, 2]
    assert torch.isfinite(_filtered(probs, epsilon_cutoff=0.25)).nonzero().flatten().tolist() == [0, 1]
    # never empty: the most likely token stays even above its probability
    assert torch.isfinite(_filtered(probs, epsilon_cutoff=0.9)).nonzero().flatten().tolist() == [0]


def test_eta_sampling_keeps_the_tokens_its_definition_keeps():
    """η = min(ε, √ε · exp(−H)): a flat distribution (high H) lowers the bar below ε."""
    flat = torch.softmax(torch.randn(64, generator=torch.Generator().manual_seed(3)), -1)
    for probs in (_probs([0.9, 0.05, 0.03, 0.015, 0.005]), flat):
        for epsilon in (0.01, 0.02, 0.1):
            entropy = float(-(probs * probs.log()).sum())
            eta = min(epsilon, math.sqrt(epsilon) * math.exp(-entropy))
            expected = sorted(set((probs >= eta).nonzero().flatten().tolist()) | {int(probs.argmax())})
            assert torch.isfinite(_filtered(probs, eta_cutoff=epsilon)).nonzero().flatten().tolist() == expected


def test_eta_and_epsilon_match_transformers_warpers():
    from transformers.generation.logits_process import EpsilonLogitsWarper, EtaLogitsWarper

    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0)) * 2
    for ours, theirs in (({"epsilon_cutoff": 0.02}, EpsilonLogitsWarper(0.02)), ({"eta_cutoff": 0.02}, EtaLogitsWarper(0.02))):
        expected = torch.isfinite(theirs(None, logits.clone()))
        assert torch.equal(torch.isfinite(_filtered(torch.softmax(logits, -1), **ours)), expected)


def _filtered(probs, **cutoffs):
    """The logits the sampler keeps finite for `probs` under the cutoffs (temperature 1)."""
    from decodekit.sampling import _epsilon, _eta

    logits = probs.log()
    if "epsilon_cutoff" in cutoffs:
        logits = _epsilon(logits, cutoffs["epsilon_cutoff"])
    if "eta_cutoff" in cutoffs:
        logits = _eta(logits, cutoffs["eta_cutoff"])
    return logits


def test_sampling_with_eta_stays_inside_the_kept_set():
    backend = expert()
    config = SamplingConfig(temperature=1.0, eta_cutoff=0.05)
    from decodekit.sampling import probabilities

    logits = backend.forward(PROMPT, Draft(), backend.new_cache())[0]
    probs = probabilities(logits, config)
    plain = torch.softmax(logits.float(), -1)
    entropy = float(-(plain * plain.log()).sum())
    eta = min(0.05, math.sqrt(0.05) * math.exp(-entropy))
    assert bool(((probs > 0) == ((plain >= eta) | (plain == plain.max()))).all())
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5)


def test_dola_relative_top_contrast_by_hand():
    final = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    premature = torch.tensor([0.25, 0.25, 0.25, 0.25]).log()
    scores = relative_top_contrast(final, premature, relative_top=0.2)  # keeps p >= 0.1
    assert scores[:3].tolist() == pytest.approx([math.log(2.0), math.log(1.2), math.log(0.6)], abs=1e-6)
    assert scores[3].item() == -math.inf


def test_dola_candidate_layers_follow_transformers_buckets():
    assert candidate_layers("high", 6, False, "dola") == [3, 5]
    assert candidate_layers("low", 6, False, "dola") == [0, 2]
    assert candidate_layers("low", 6, True, "dola") == [2]  # tied: the embeddings' echo is skipped
    assert candidate_layers("high", 48, False, "dola") == list(range(28, 48, 2))
    assert candidate_layers("low", 48, False, "dola") == list(range(0, 20, 2))
    assert candidate_layers([1, 3], 4, False, "dola") == [1, 3]


def test_uscd_selective_contrast_by_hand():
    vocab = 400
    flat = torch.zeros(1, vocab)  # uniform: std 0, uncertain
    flat[0, 0] = 0.5
    lame = torch.zeros(1, vocab)
    lame[0, 1] = 3.0
    scores = selective_contrast(flat, lame, weight=0.7, threshold=0.005, filter=2 / 3)
    p, q = torch.softmax(flat, -1)[0], torch.softmax(lame, -1)[0]
    expected = torch.where((p - 0.7 * q > 0) & (p >= (2 / 3) / vocab), (p - 0.7 * q).log(), torch.tensor(-math.inf))
    assert torch.allclose(scores[0], expected)
    sharp = torch.zeros(1, vocab)
    sharp[0, 0] = 20.0  # confident: std above the threshold, the model's own log-probabilities
    assert torch.allclose(selective_contrast(sharp, lame, 0.7, 0.005, 2 / 3), torch.log_softmax(sharp, -1))


def test_uscd_drops_doctest_examples_from_the_prompt():
    backend = expert()
    text = 'def add(a, b):\n    """Add two numbers.\n    >>> add(1, 2)\n    3\n    """\n'
    lame = backend.decode(drop_examples(backend.encode(text), backend))
    assert lame == 'def add(a, b):\n    """Add two numbers.\n    """\n'


def test_uscd_without_examples_or_lame_prompt_is_plain_when_confident():
    """A lame prompt identical to the prompt contrasts nothing away on confident rows."""
    plain = Decoder(expert(), "ar").generate(prompt_ids=PROMPT, max_new_tokens=20).token_ids
    ours = Decoder(expert(), "uscd", threshold=0.0).generate(prompt_ids=PROMPT, max_new_tokens=20)
    assert ours.token_ids == plain


# --- bad options ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "options", "message"), [
    ("contrastive-decoding", {"alpha": 1.5}, "alpha"),
    ("contrastive-decoding", {"alpha": -0.1}, "alpha"),
    ("contrastive-decoding", {}, "amateur="),
    ("dola", {"dola_layers": "middle"}, "dola_layers"),
    ("dola", {"dola_layers": [1, 9]}, "layer 9 is out of range"),
    ("dola", {"relative_top": 2.0}, "relative_top"),
    ("dola", {"repetition_penalty": 0}, "repetition_penalty"),
    ("lol", {}, "amateur="),
    ("lol", {"alpha": 3}, "alpha"),
    ("mirostat", {"version": 3}, "version"),
    ("mirostat", {"tau": -1.0}, "tau"),
    ("mirostat", {"eta": "fast"}, "eta"),
    ("uscd", {"weight": 2.0}, "weight"),
    ("uscd", {"lame": "x"}, "no option 'lame'"),
])
def test_bad_strategy_options_are_named(method, options, message):
    with pytest.raises(DecodekitError, match=message):
        Decoder(expert(), method, **options)


def test_an_amateur_with_another_tokenizer_is_refused():
    other = HFBackend(model=tiny_model("llama", 1, 2), tokenizer=byte_tokenizer(reverse=True), name="tiny-reversed")
    with pytest.raises(DecodekitError, match="does not share the tokenizer"):
        ContrastiveDecoding(amateur="x").attach(expert(), other)


def test_mirostat_needs_sampling_and_its_own_truncation():
    with pytest.raises(DecodekitError, match="temperature > 0"):
        Decoder(expert(), "mirostat").generate(prompt_ids=PROMPT, max_new_tokens=4)
    with pytest.raises(DecodekitError, match="top_p"):
        Decoder(expert(), "mirostat").generate(prompt_ids=PROMPT, max_new_tokens=4, temperature=1.0, top_p=0.9)


@pytest.mark.parametrize(("method", "drafter", "message"), [
    ("prompt-lookup", "token-recycling", "drafter= goes with a strategy"),
    ("dola", "dola", "drafter must be a drafting method"),
    ("dola", "nonsense", "unknown method 'nonsense'"),
    ("dolla", None, "unknown method 'dolla'.*dola"),
])
def test_bad_method_and_drafter_pairs_are_named(method, drafter, message):
    with pytest.raises(DecodekitError, match=message):
        Decoder(expert(), method, drafter=drafter)


@pytest.mark.parametrize("value", [-0.1, 1.0, float("nan")])
def test_bad_cutoffs_are_named(value):
    with pytest.raises(DecodekitError, match="eta_cutoff"):
        SamplingConfig(temperature=1.0, eta_cutoff=value)
    with pytest.raises(DecodekitError, match="epsilon_cutoff"):
        SamplingConfig(temperature=1.0, epsilon_cutoff=value)
