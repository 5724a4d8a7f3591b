"""What each search method promises, on tiny random models: momentum decoding and contrastive
search without their penalty are greedy decoding; momentum's step resistance never closes a
repeated 5-gram; diverse beam groups differ; the CLI prints the n-best."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import ARCHITECTURES, save_tiny_model, tiny_backend
from typer.testing import CliRunner

from decodekit.api import Decoder
from decodekit.cli import app
from decodekit.errors import DecodekitError
from decodekit.scoring import continuation_nll
from decodekit.search import (
    ContrastiveSearch,
    DiverseBeamSearch,
    ExactExtract,
    MomentumDecoding,
    SuperposedDecoding,
    make_search,
    run_search,
)
from decodekit.search.momentum import repetition_length
from decodekit.search.ngram import NgramModel
from decodekit.types import Draft

PROMPT = list(range(10, 40)) * 2


def _greedy(backend, prompt, n):
    return Decoder(backend, "ar").generate(prompt_ids=prompt, max_new_tokens=n).token_ids


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_momentum_without_resistance_is_greedy(arch):
    backend = tiny_backend(arch, seed=2)
    ours = run_search(backend, PROMPT, MomentumDecoding(alpha=0.0), 40).hypotheses[0].token_ids
    assert ours == _greedy(backend, PROMPT, 40)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_contrastive_search_without_penalty_is_greedy(arch):
    backend = tiny_backend(arch, seed=2)
    ours = run_search(backend, PROMPT, ContrastiveSearch(alpha=0.0, top_k=3), 30).hypotheses[0].token_ids
    assert ours == _greedy(backend, PROMPT, 30)


def test_momentum_never_closes_a_repeated_5_gram():
    backend = tiny_backend("llama", seed=2)
    greedy = _greedy(backend, PROMPT, 60)
    text = PROMPT + greedy
    assert any(repetition_length(text[:i], text[i], 5) == 5 for i in range(len(PROMPT), len(text))), \
        "greedy repeats no 5-gram here: the test would show nothing"
    ours = run_search(backend, PROMPT, MomentumDecoding(top_k=50), 60).hypotheses[0].token_ids
    text = PROMPT + ours
    assert all(repetition_length(text[:i], text[i], 5) < 5 for i in range(len(PROMPT), len(text)))


def test_repetition_length_counts_the_longest_repeated_n_gram():
    text = [5, 6, 7, 8, 9, 5, 6, 7, 8]
    assert repetition_length(text, 9, 5) == 5  # 6 7 8 9 would be ... 5 6 7 8 9 repeated
    assert repetition_length(text, 9, 3) == 3
    assert repetition_length(text, 6, 5) == 1  # in the text, but "8 6" is new
    assert repetition_length(text, 4, 5) == 0


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_diverse_beam_groups_differ(arch):
    backend = tiny_backend(arch, seed=2)
    search = DiverseBeamSearch(num_beams=6, num_beam_groups=3, diversity_penalty=2.0)
    run_search(backend, PROMPT, search, 12)
    firsts = [max(group.kept)[1] for group in search.finished]  # each group's best hypothesis
    assert len({tuple(tokens) for tokens in firsts}) == 3
    first_tokens = {tuple(tokens[:1]) for tokens in firsts}
    assert len(first_tokens) == 3, "the Hamming penalty should make the groups start differently"


@pytest.mark.parametrize(("method", "options", "message"), [
    ("diverse-beam", {"num_beams": 4, "num_beam_groups": 3}, "num_beam_groups \\(3\\) must divide num_beams \\(4\\)"),
    ("diverse-beam", {"diversity_penalty": -1.0}, "diversity_penalty must be >= 0"),
    ("contrastive-search", {"alpha": 1.5}, "alpha .* must be in \\[0, 1\\]"),
    ("contrastive-search", {"top_k": 0}, "top_k must be an integer >= 1"),
    ("momentum", {"resistance": "quadratic"}, "unknown resistance 'quadratic'"),
    ("momentum", {"alpha": -0.1}, "alpha .* must be >= 0"),
    ("momentum", {"max_ngram": 0}, "max_ngram must be an integer >= 1"),
    ("superposed", {"num_drafts": 0}, "num_drafts must be an integer >= 1"),
    ("superposed", {"alpha": 2.0}, "alpha .* must be in \\[0, 1\\]"),
    ("superposed", {"temperature": 0.0}, "temperature must be > 0"),
    ("exact-extract", {}, "needs passage="),
])
def test_bad_search_options_are_named(method, options, message):
    with pytest.raises(DecodekitError, match=message):
        make_search(method, **options)


@pytest.mark.parametrize("method", ["beam[num_beams=3]", "diverse-beam[num_beams=4,num_beam_groups=2]",
                                    "contrastive-search", "momentum", "superposed[num_drafts=2]"])
def test_every_search_runs_from_the_cli(tmp_path, method):
    folder = save_tiny_model(tmp_path / "tiny")
    result = CliRunner().invoke(app, ["generate", "hello there", "-m", str(folder), "--method", method, "-n", "8",
                                      "--raw", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    beams = {"beam[num_beams=3]": 3, "diverse-beam[num_beams=4,num_beam_groups=2]": 4,
             "superposed[num_drafts=2]": 2}.get(method, 1)
    assert len(payload["candidates"]) == beams
    assert payload["token_ids"] == payload["candidates"][0]["token_ids"]


def _span_score(backend, prompt, span, eos):
    """log p(span + end | prompt), written out with one plain forward."""
    return -continuation_nll(backend, prompt, span + [eos])


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_exact_extract_finds_the_best_span_by_brute_force(arch):
    backend = tiny_backend(arch, seed=4)
    eos = next(iter(backend.eos_token_ids))
    passage = [70, 71, 72, 70, 73, 74, 71, 72, 75]
    prompt = list(range(30, 45))
    spans = {tuple(passage[i:j]) for i in range(len(passage)) for j in range(i + 1, len(passage) + 1)}
    scores = sorted((_span_score(backend, prompt, list(s), eos), s) for s in spans)
    found = run_search(backend, prompt, ExactExtract(passage, num_return_sequences=3), 24).hypotheses
    assert [tuple(h.token_ids[:-1]) for h in found] == [s for _, s in scores[::-1][:3]]
    assert [h.score for h in found] == pytest.approx([score for score, _ in scores[::-1][:3]], abs=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_exact_extract_returns_a_span_never_worse_than_greedys(seed):
    backend = tiny_backend("llama", seed=seed)
    eos = next(iter(backend.eos_token_ids))
    prompt = list(range(40, 60))
    greedy = _greedy(backend, prompt, 6)
    passage = [90, 91] + [t for t in greedy[:3] if t != eos] + [92, 93, 94]  # greedy's start is a span
    best = run_search(backend, prompt, ExactExtract(passage), 24).hypotheses[0]
    span = best.token_ids[:-1]
    assert any(passage[i: i + len(span)] == span for i in range(len(passage)))
    greedy_span = [t for t in greedy[:3] if t != eos]
    assert best.score >= _span_score(backend, prompt, greedy_span, eos) - 1e-5


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_superposed_with_one_draft_and_no_ngram_is_greedy(arch):
    backend = tiny_backend(arch, seed=2)
    ours = run_search(backend, PROMPT, SuperposedDecoding(num_drafts=1, alpha=0.0), 30).hypotheses
    assert len(ours) == 1 and ours[0].token_ids == _greedy(backend, PROMPT, 30)


def test_superposed_makes_k_distinct_drafts_with_one_row_per_step():
    backend = tiny_backend("llama", seed=2)
    result = run_search(backend, PROMPT, SuperposedDecoding(num_drafts=3), 20)
    drafts = [tuple(h.token_ids) for h in result.hypotheses]
    assert len(drafts) == 3 and len(set(drafts)) == 3
    assert result.stats.rows == result.stats.steps  # k drafts, one forward row per step
    means = [h.score / len(h.token_ids) for h in result.hypotheses]
    assert means == sorted(means, reverse=True)


def test_superposed_input_is_the_weighted_embedding_mix():
    """A mixture with all its weight on one token is that token: the same logits as forward_rows."""
    backend = tiny_backend("gemma3", seed=2)  # Gemma scales its embeddings: the mix must scale too
    plain, mixed = backend.new_cache(), backend.new_cache()
    backend.forward(PROMPT, Draft.empty(), plain)
    backend.forward(PROMPT, Draft.empty(), mixed)
    expected, _ = backend.forward_rows([77], plain)
    got = backend.forward_mixtures([[(77, 1.0), (78, 0.0)]], mixed)
    assert torch.allclose(got, expected, atol=1e-4)


def test_ngram_model_tells_unseen_contexts_from_zero_counts():
    model = NgramModel((2, 3))
    model.add([1, 2, 3, 1, 2, 4])
    assert model.prob([1], 2, 2) == 1.0 and model.prob([2], 3, 2) == 0.5 and model.prob([2], 9, 2) == 0.0
    assert model.prob([7], 2, 2) is None
    assert model.mixture([1, 2], 4, (0.5, 0.25)) == pytest.approx(0.5 * 0.5 + 0.25 * 0.5)


def test_superposed_num_drafts_on_the_cli_prints_all_k(tmp_path):
    folder = save_tiny_model(tmp_path / "tiny")
    result = CliRunner().invoke(app, ["generate", "hello there", "-m", str(folder), "--method", "superposed",
                                      "--num-drafts", "3", "-n", "6", "--raw"])
    assert result.exit_code == 0, result.output
    assert [line.split(" ")[0] for line in result.stdout.splitlines() if line.startswith("#")] == ["#1", "#2", "#3"]
    wrong = CliRunner().invoke(app, ["generate", "hi", "-m", str(folder), "--method", "beam", "--num-drafts", "3"])
    assert wrong.exit_code != 0 and "--num-drafts goes with --method superposed" in wrong.output
