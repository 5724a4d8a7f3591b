"""Grammar constraints in the one loop: every drafter under a grammar reproduces constrained
plain decoding, outputs match their grammar, forced tokens are committed without a forward of
their own, and drafts are trimmed to what the grammar allows."""

from __future__ import annotations

import functools
import json
import re

import jsonschema
import pytest
import torch
from test_exactness import CASES, GPU_COST, SAMPLING, fixed_backend, repeating_prompts
from test_loop import GREEDY
from tiny import save_tiny_model, tiny_backend

from decodekit import grammar as grammars
from decodekit.api import Decoder
from decodekit.budget import DEFAULT_CPU_COST
from decodekit.constraints.constraint import GrammarConstraint
from decodekit.drafters import NoDrafter
from decodekit.errors import DecodekitError
from decodekit.grammar import GrammarError
from decodekit.loop import decode
from decodekit.types import Draft
from decodekit.verify import SeededRandomness

# Forced text after every "i" ("tem=") and after "en" ("d"): fast-forward happens mid-output.
REGEX = r"(item=[a-z0-9]{1,6}; ){0,3}end"
SCHEMA = {
    "type": "array", "minItems": 1, "maxItems": 6,
    "items": {"type": "object",
              "properties": {"identifier": {"type": "integer", "minimum": 0, "maximum": 999},
                             "label": {"type": "string", "maxLength": 4}},
              "required": ["identifier", "label"], "additionalProperties": False},
}
GRAMMARS = {"regex": grammars.regex(REGEX), "json": grammars.json_schema(SCHEMA)}


def matches(name: str, text: str) -> bool:
    if name == "regex":
        return re.fullmatch(REGEX, text) is not None
    try:
        jsonschema.validate(json.loads(text), SCHEMA)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    return True


def constrained(backend, grammar):
    return GrammarConstraint(grammar, backend.grammar_tokenizer(), backend.vocab_size, backend.eos_token_ids)


def run(backend, prompt, drafter, grammar, max_new_tokens, sampling=GREEDY, seed=0):
    constraint = constrained(backend, grammar)
    steps = list(decode(backend, list(prompt), drafter, sampling, SeededRandomness(seed), max_new_tokens, constraint))
    return [t for s in steps for t in s.tokens], steps, constraint


@functools.cache
def plain(arch, prompt, name, max_new_tokens, sampling=GREEDY, seed=0):
    tokens, _, constraint = run(tiny_backend(arch), prompt, NoDrafter(), GRAMMARS[name], max_new_tokens, sampling, seed)
    return tokens, constraint.completed


PROMPTS = 3
MAX_NEW = 48


@pytest.mark.parametrize("name", GRAMMARS)
@pytest.mark.parametrize("method", CASES, ids=str)
def test_constrained_greedy_equals_constrained_plain_decoding(method, name):
    arch = "llama"
    backend = fixed_backend(arch, DEFAULT_CPU_COST)
    drafter = method.build(backend)
    for i, prompt in enumerate(repeating_prompts(arch)[:PROMPTS]):
        got, _, constraint = run(backend, prompt, drafter, GRAMMARS[name], MAX_NEW)
        want, completed = plain(arch, prompt, name, MAX_NEW)
        assert got == want, f"prompt {i}"
        assert constraint.completed == completed
        if completed:
            assert matches(name, backend.decode(got)), backend.decode(got)


class Recording:
    """Wraps a drafter and remembers how long each proposal was, before the grammar trimmed it."""

    def __init__(self, inner):
        self.inner, self.name, self.proposed = inner, inner.name, []

    def reset(self, *args):
        self.inner.reset(*args)

    def propose(self, history, budget):
        draft = self.inner.propose(history, budget)
        self.proposed.append(len(draft))
        return draft

    def observe(self, draft, result, logits):
        self.inner.observe(draft, result, logits)


@pytest.mark.parametrize("name", GRAMMARS)
def test_tree_drafts_are_trimmed_and_what_survives_is_accepted(name):
    """The equality tests above have teeth: drafts do get cut by the grammar, and what is left is
    verified and accepted, forced states included."""
    method = next(m for m in CASES if m.name == "token-recycling" and m.options == {"adaptive": False})
    backend = fixed_backend("llama", DEFAULT_CPU_COST)
    drafter = Recording(method.build(backend))
    verified = accepted = trimmed = 0
    for prompt in repeating_prompts("llama")[:PROMPTS]:
        drafter.proposed.clear()
        _, steps, _ = run(backend, prompt, drafter, GRAMMARS[name], MAX_NEW)
        verified += sum(s.draft_len for s in steps)
        accepted += sum(s.num_accepted for s in steps)
        assert all(s.draft_len <= p for s, p in zip(steps, drafter.proposed))
        trimmed += sum(p - s.draft_len for s, p in zip(steps, drafter.proposed))
    assert trimmed > 0 and accepted > 0 and verified > accepted


def test_plain_constrained_outputs_match_their_grammar_and_are_fast_forwarded():
    backend = tiny_backend("llama")
    forced = completed = 0
    for name in GRAMMARS:
        for prompt in repeating_prompts("llama")[:PROMPTS]:
            tokens, steps, constraint = run(backend, prompt, NoDrafter(), GRAMMARS[name], 200)
            text = backend.decode(tokens)
            if constraint.completed:
                completed += 1
                assert matches(name, text), text
                assert tokens[-1] in backend.eos_token_ids and steps[-1].stop_reason == "eos"
            # Forced tokens are committed without a forward: fewer steps than tokens under AR.
            assert sum(s.forced for s in steps) == constraint.forced_tokens
            assert len(steps) == len(tokens) - constraint.forced_tokens
            forced += constraint.forced_tokens
    assert completed >= 4 and forced > 0


@pytest.mark.parametrize("name", GRAMMARS)
@pytest.mark.parametrize("method", [m for m in CASES if not m.samples_its_drafts], ids=str)
def test_constrained_seeded_sampling_equals_constrained_plain_sampling(method, name):
    backend = fixed_backend("llama", GPU_COST)
    drafter = method.build(backend)
    for i, prompt in enumerate(repeating_prompts("llama")[:PROMPTS]):
        got, _, _ = run(backend, prompt, drafter, GRAMMARS[name], 30, SAMPLING, seed=i)
        assert got == plain("llama", prompt, name, 30, SAMPLING, seed=i)[0], f"prompt {i}"


@pytest.mark.parametrize("method", [m for m in CASES if m.samples_its_drafts], ids=str)
def test_sampled_drafts_under_a_grammar_give_grammatical_text(method):
    backend = fixed_backend("llama", GPU_COST)
    drafter = method.build(backend)
    for i, prompt in enumerate(repeating_prompts("llama")[:PROMPTS]):
        tokens, _, constraint = run(backend, prompt, drafter, GRAMMARS["regex"], 200, SAMPLING, seed=i)
        text = backend.decode(tokens)
        assert constraint.completed and matches("regex", text), text


# --- trimming ---------------------------------------------------------------------------------

def _ids(backend, text):
    return backend.encode(text)


def test_trim_cuts_a_chain_at_the_first_refused_token_and_leaves_the_state_alone():
    backend = tiny_backend("llama")
    constraint = constrained(backend, grammars.regex("abc[0-9]+"))
    draft = Draft(_ids(backend, "abcX1"))
    trimmed, allowed = constraint.trim(draft)
    assert trimmed.tokens == _ids(backend, "abc") and trimmed.is_chain and trimmed.origin == [0, 1, 2]
    assert allowed.shape == (4, backend.vocab_size)
    a, one = (_ids(backend, ch)[0] for ch in "a1")
    assert allowed[0].nonzero().flatten().tolist() == [a]  # forced "a": only it
    assert allowed[3, one] and not allowed[3, a]  # after "abc": digits only
    # The matcher was rolled back: the same draft trims the same way again.
    assert constraint.trim(draft)[0].tokens == trimmed.tokens


def test_trim_drops_refused_branches_of_a_tree_with_their_subtrees():
    backend = tiny_backend("llama")
    constraint = constrained(backend, grammars.regex("a(b|c)d"))
    a, b, c, d, x = (_ids(backend, ch)[0] for ch in "abcdx")
    # root ─ a ─┬─ b ─ d
    #           ├─ x ─ d     (x refused: it and its child go)
    #           └─ c ─ x     (c kept, its refused child goes)
    draft = Draft([a, b, x, c, d, d, x], [-1, 0, 0, 0, 1, 2, 3])
    trimmed, allowed = constraint.trim(draft)
    assert trimmed.tokens == [a, b, c, d] and trimmed.parents == [-1, 0, 0, 1]
    assert trimmed.origin == [0, 1, 3, 4]
    assert allowed.shape[0] == 5
    assert allowed[2, d] and not allowed[2, x]  # after "ab": only d


def test_sampled_drafts_keep_refused_siblings_as_leaves():
    backend = tiny_backend("llama")
    constraint = constrained(backend, grammars.regex("a(b|c)d"))
    a, b, x, d = (_ids(backend, ch)[0] for ch in "abxd")
    probs = torch.full((4, backend.vocab_size), 1.0 / backend.vocab_size)
    draft = Draft([a, x, b, d], [-1, 0, 0, 1], draft_probs=probs)
    trimmed, allowed = constraint.trim(draft)
    # x stays (rejection sampling must see every drawn sibling) but nothing below it is checked.
    assert trimmed.tokens == [a, x, b] and trimmed.draft_probs.shape[0] == 3
    assert bool(allowed[2].all())  # a leaf's row is never read as a verified prefix


def test_commit_returns_forced_tokens_and_eos_when_the_grammar_is_done():
    backend = tiny_backend("llama")
    constraint = constrained(backend, grammars.regex("ab[0-9]xyz"))
    assert constraint.commit([]) == _ids(backend, "ab")
    forced = constraint.commit(_ids(backend, "7"))
    eos = backend.grammar_tokenizer().eos_token
    assert forced == _ids(backend, "xyz") + [eos]
    assert constraint.completed


# --- the API ----------------------------------------------------------------------------------

def test_generate_reports_completion_and_forced_tokens():
    decoder = Decoder(tiny_backend("llama"), "prompt-lookup")
    schema = {"type": "object", "properties": {"a_rather_long_key_name": {"type": "integer"}},
              "required": ["a_rather_long_key_name"], "additionalProperties": False}
    result = decoder.generate("x", response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
                              max_new_tokens=64)
    assert result.text.startswith('{"a_rather_long_key_name": ')
    assert result.stats.forced_tokens >= len('{"a_rather_long_key_name": ') - 1
    if result.completed:
        jsonschema.validate(json.loads(result.text), schema)
    cut = decoder.generate("x", regex="[a-z]{20}", max_new_tokens=5)
    assert cut.completed is False and cut.stats.stop_reason == "length"
    assert decoder.generate("x", max_new_tokens=3).completed is None


@pytest.mark.parametrize("options, words", [
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "strin"}}}}, "strin"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": '{"type": '}}}, "not valid JSON"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}, "lenien": True}}}, None),
    ({"response_format": {"type": "xml"}}, "'xml'"),
    ({"response_format": "json"}, "response_format must be a dict"),
    ({"regex": "a(b"}, "unclosed group"),
    ({"regex": ""}, "non-empty"),
    ({"grammar": 'start: foo\nfoo: "x" bar'}, 'unknown name: "bar"'),
    ({"grammar": 'root ::= "a" b\nb ::= [0-9+'}, "GBNF"),
    ({"regex": "a", "grammar": 'start: "a"'}, "at most one"),
])
def test_bad_grammars_fail_before_generation_with_a_clear_message(options, words):
    decoder = Decoder(tiny_backend("llama"), "ar")
    with pytest.raises(DecodekitError) as error:
        decoder.generate("x", max_new_tokens=4, **options)
    if words:
        assert words in str(error.value)


def test_unknown_json_option_is_refused():
    with pytest.raises(GrammarError, match="lenien"):
        grammars.json_schema({}, lenien=True)


def test_lark_and_gbnf_grammars_constrain_generation():
    decoder = Decoder(tiny_backend("llama"), "ar")
    lark = decoder.generate("x", grammar='start: "yes" | "no" | "maybe"', max_new_tokens=8)
    gbnf = decoder.generate("x", grammar='root ::= ("yes" | "no") "!"', max_new_tokens=8)
    assert lark.text in ("yes", "no", "maybe") and lark.completed
    assert gbnf.text in ("yes!", "no!") and gbnf.completed


def test_lenient_json_accepts_a_schema_with_unsupported_keywords():
    schema = {"type": "object", "properties": {"a": {"type": "string", "format": "no-such-format"}}}
    strict = grammars.json_schema(schema)
    lenient = grammars.json_schema(schema, lenient=True)
    tokenizer = tiny_backend("llama").grammar_tokenizer()
    with pytest.raises(GrammarError):
        grammars.check(strict, tokenizer)
    grammars.check(lenient, tokenizer)


def test_a_slow_tokenizer_gets_a_clear_error():
    from decodekit.errors import UnsupportedModelError
    from decodekit.models.hf.backend import grammar_tokenizer

    with pytest.raises(UnsupportedModelError, match="fast \\(Rust\\) tokenizer"):
        grammar_tokenizer(object(), 258, (256,), "slow-model")  # type: ignore[arg-type]


def test_cli_json_output_says_whether_the_grammar_completed(tmp_path):
    from typer.testing import CliRunner

    from decodekit.cli import app

    save_tiny_model(tmp_path)
    (tmp_path / "yn.gbnf").write_text('root ::= "yes" | "no"\n')
    runner = CliRunner()
    done = runner.invoke(app, ["generate", "x", "--model", str(tmp_path), "--raw", "--json", "--grammar",
                               str(tmp_path / "yn.gbnf")])
    assert done.exit_code == 0, done.output
    record = json.loads(done.stdout)
    assert record["text"] in ("yes", "no") and record["completed"] is True
    cut = runner.invoke(app, ["generate", "x", "--model", str(tmp_path), "--raw", "--json", "--regex", "[a-z]{30}",
                              "-n", "4"])
    assert json.loads(cut.stdout)["completed"] is False
