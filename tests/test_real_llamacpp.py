"""The llama.cpp backend on the zoo's GGUFs: forwards, trees and commits agree with one-token
decoding, and every training-free method's greedy output is llama.cpp's own greedy output
(llama-cpp-python's Llama.generate), token for token, unless a logit tie explains it."""

import json

import jsonschema
import pytest
import torch
from typer.testing import CliRunner

from decodekit import Decoder
from decodekit.bench.divergence import first_divergence, is_bug, logit_gap, tie_tolerance
from decodekit.cli import app
from decodekit.errors import DecodekitError
from decodekit.models.llamacpp import load_llamacpp
from decodekit.models.llamacpp.baseline import LlamaCppOwn
from decodekit.prompts import conversation_ids
from decodekit.types import Draft

pytestmark = pytest.mark.slow

PROMPTS = [
    "Summarize in two sentences: The committee met on Tuesday. The committee approved the budget, "
    "and the committee asked for a new report on the budget by Friday.",
    "Translate to French: The cat sleeps on the warm mat near the window.",
    "Write a Python function that returns the squares of a list of numbers, then explain it.",
]
TRAINING_FREE = ["ar", "prompt-lookup", "copy-spec", "token-recycling", "aded", "lookahead",
                 "prompt-lookup+token-recycling"]
NEW_TOKENS = 64


@pytest.fixture(scope="module")
def smollm2():
    return load_llamacpp("smollm2-135m", calibrate=False, progress=False)


def _prompt(backend, text):
    return conversation_ids(backend, [{"role": "user", "content": text}])  # a plain transcript without a template


def _greedy_steps(backend, ids, n):
    """Greedy decoding one token per forward: the tokens and each step's logits."""
    cache, pending, tokens, rows = backend.new_cache(), ids, [], []
    for _ in range(n):
        logits = backend.forward(pending, Draft.empty(), cache)[-1]
        cache.keep(len(cache), [])
        rows.append(logits)
        tokens.append(int(logits.argmax()))
        pending = [tokens[-1]]
    return tokens, torch.stack(rows)


def test_a_chain_verified_in_one_forward_matches_one_token_steps(smollm2):
    ids = _prompt(smollm2, PROMPTS[0])
    tokens, rows = _greedy_steps(smollm2, ids, 20)
    batched = smollm2.forward(ids, Draft(tokens[:-1]), smollm2.new_cache())
    assert batched.shape == (20, smollm2.vocab_size)
    assert batched.argmax(-1).tolist() == tokens
    scale = rows.abs().max()
    assert (batched - rows).abs().max() <= 0.05 * scale  # the same numbers up to kernel rounding


def test_tree_rows_see_only_their_own_branch_and_a_commit_keeps_one_path(smollm2):
    ids = _prompt(smollm2, PROMPTS[1])
    tokens, rows = _greedy_steps(smollm2, ids, 8)
    wrong = (tokens[1] + 1) % smollm2.vocab_size
    # root ─┬─ wrong ── tokens[2]          (node 0, 1)
    #       └─ tokens[1] ─┬─ tokens[2]     (node 2, 3)
    #                     └─ wrong         (node 4)
    cache = smollm2.new_cache()
    smollm2.forward(ids, Draft.empty(), cache)
    draft = Draft([wrong, tokens[2], tokens[1], tokens[2], wrong], parents=[-1, 0, -1, 2, 2])
    logits = smollm2.forward([tokens[0]], draft, cache)
    assert len(cache) == len(ids) + 1 + 5
    # Row 0 follows tokens[0]; row 3 follows tokens[1], row 4 follows tokens[2]: as in one-token steps.
    assert [int(logits[r].argmax()) for r in (0, 3, 4)] == [tokens[1], tokens[2], tokens[3]]
    cache.keep(len(cache) - len(draft), [2, 3])
    assert len(cache) == len(ids) + 3
    after = smollm2.forward([tokens[3]], Draft.empty(), cache)
    assert int(after[0].argmax()) == tokens[4]
    assert (after[0] - rows[4]).abs().max() <= 0.05 * rows.abs().max()


def test_crop_rolls_back_and_an_old_cache_refuses_to_be_used(smollm2):
    ids = _prompt(smollm2, PROMPTS[2])
    tokens, _ = _greedy_steps(smollm2, ids, 6)
    cache = smollm2.new_cache()
    smollm2.forward(ids, Draft(tokens[:5]), cache)
    cache.crop(len(ids) + 2)
    again = smollm2.forward([tokens[2]], Draft.empty(), cache)
    assert int(again[0].argmax()) == tokens[3]
    tree = Draft([tokens[3], tokens[4]], parents=[-1, -1])
    smollm2.forward([tokens[2]], tree, cache)
    with pytest.raises(ValueError, match="not committed"):
        smollm2.forward([tokens[3]], Draft.empty(), cache)
    cache.crop(len(ids) + 2)
    assert int(smollm2.forward([tokens[2]], Draft.empty(), cache)[0].argmax()) == tokens[3]
    smollm2.new_cache()
    with pytest.raises(DecodekitError, match="one cache at a time"):
        smollm2.forward([tokens[3]], Draft.empty(), cache)
    with pytest.raises(DecodekitError, match="do not fit the context"):
        smollm2.forward([1] * (smollm2.context_length + 1), Draft.empty(), smollm2.new_cache())


def test_encode_decode_and_eos(smollm2):
    text = "naïve café — 東京 🙂 and code: def f(x): return x"
    assert smollm2.decode(smollm2.encode(text)) == text
    assert smollm2.eos_token_ids and all(0 <= t < smollm2.vocab_size for t in smollm2.eos_token_ids)


def test_chat_template_gives_the_ids_transformers_gives(smollm2):
    from decodekit.models.hf import load_backend

    hf = load_backend("smollm2-135m", calibrate=False)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there, café?"}]
    assert smollm2.apply_chat_template(messages) == hf.apply_chat_template(messages)
    assert smollm2.apply_chat_template(messages[1:]) == hf.apply_chat_template(messages[1:])


@pytest.mark.parametrize("model", ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"])
def test_every_training_free_method_gives_llama_cpps_own_greedy_output(model):
    backend = load_llamacpp(model, calibrate=False, progress=False)
    own = LlamaCppOwn(backend)
    decoders = {method: Decoder(backend, method) for method in TRAINING_FREE}
    unexplained = []
    for text in PROMPTS:
        ids = _prompt(backend, text)
        reference = own.generate(ids, NEW_TOKENS)
        for method, decoder in decoders.items():
            got = decoder.generate(prompt_ids=ids, max_new_tokens=NEW_TOKENS).token_ids
            position = first_divergence(reference, got)
            if position is None:
                continue
            if position >= min(len(reference), len(got)):
                unexplained.append((method, text[:20], position, "one side ended early"))
                continue
            row = backend.forward(ids + reference[:position], Draft.empty(), backend.new_cache())[-1]
            gap, tolerance = logit_gap(row, reference[position], got[position]), tie_tolerance(row, backend)
            if is_bug(gap, tolerance):
                unexplained.append((method, text[:20], position, f"gap {gap:.3f} > {tolerance:.3f}"))
    assert not unexplained, unexplained


def test_requantised_copy_is_made_once_and_loads():
    backend = load_llamacpp("smollm2-135m", quant="q8_0", calibrate=False, progress=False)
    assert backend.weight_type == "Q8_0" and backend.name == "smollm2-135m@q8_0"
    made = backend.path.stat().st_mtime_ns
    again = load_llamacpp("smollm2-135m", quant="q8_0", calibrate=False, progress=False)
    assert again.path == backend.path and again.path.stat().st_mtime_ns == made
    ids = _prompt(again, PROMPTS[1])
    assert Decoder(again, "prompt-lookup").generate(prompt_ids=ids, max_new_tokens=16).token_ids == \
        Decoder(again, "ar").generate(prompt_ids=ids, max_new_tokens=16).token_ids


def test_quant_auto_measures_each_weight_type_and_loads_the_fastest(monkeypatch, tmp_path):
    import decodekit.models.auto_form as auto_form

    monkeypatch.setattr(auto_form, "home", lambda: tmp_path)  # measure afresh; quantised copies stay cached
    decoder = Decoder("smollm2-135m", "copy-spec", backend="llama.cpp", quant="auto")
    choice = decoder.form_choice
    assert choice.reference == "q4_1" and [m.form for m in choice.measures] == ["q4_1", "q4_0", "q8_0", "bf16"]
    allowed = [m for m in choice.measures if not m.excluded]
    assert choice.form == max(allowed, key=lambda m: m.tokens_per_s).form
    assert decoder.backend.weight_type.lower() == choice.form
    wide = {m.form: m.perplexity for m in choice.measures}  # 8+ bit copies keep the Q4_1 rounding
    assert wide["q8_0"] == pytest.approx(wide["q4_1"], rel=0.01) and wide["bf16"] == pytest.approx(wide["q4_1"], rel=0.01)
    again = Decoder("smollm2-135m", "copy-spec", backend="llama.cpp", quant="auto")
    assert again.form_choice.cached and again.backend.weight_type == decoder.backend.weight_type


def test_json_schema_output_on_llama_cpp_validates_and_drafting_changes_nothing(smollm2):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                               "days": {"type": "integer", "minimum": 1, "maximum": 9}},
              "required": ["city", "days"], "additionalProperties": False}
    response_format = {"type": "json_schema", "json_schema": {"name": "trip", "schema": schema}}
    ids = _prompt(smollm2, "A three-day trip to Paris. Give it as JSON with the city and the number of days.")
    outputs = [Decoder(smollm2, method).generate(prompt_ids=ids, max_new_tokens=40, response_format=response_format)
               for method in ("ar", "prompt-lookup", "token-recycling")]
    assert outputs[0].completed
    jsonschema.validate(json.loads(outputs[0].text), schema)
    assert all(o.token_ids == outputs[0].token_ids for o in outputs)


def test_draft_model_runs_on_llama_cpp_and_stays_lossless(smollm2):
    ids = _prompt(smollm2, PROMPTS[0])
    drafted = Decoder(smollm2, "draft-model", draft="smollm2-135m").generate(prompt_ids=ids, max_new_tokens=32)
    assert drafted.token_ids == Decoder(smollm2, "ar").generate(prompt_ids=ids, max_new_tokens=32).token_ids
    assert drafted.stats.drafted_tokens > 0
    with pytest.raises(DecodekitError, match=r"does not expose hidden states|transformers backend"):
        Decoder(smollm2, "draft-model", draft="smollm2-135m", predictor="head").generate(prompt_ids=ids,
                                                                                        max_new_tokens=4)


def test_self_spec_names_the_backend_it_needs(smollm2):
    with pytest.raises(DecodekitError, match=r"needs the transformers backend.*not llama.cpp"):
        Decoder(smollm2, "self-spec")


def test_bench_cli_on_llama_cpp_runs_its_own_baselines(tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["bench", "--backend", "llama.cpp", "--categories", "translation",
                                      "--per-category", "1", "--max-new-tokens", "12",
                                      "--methods", "ar,prompt-lookup,llama-greedy,llama-prompt-lookup", "--out", str(out)])
    assert result.exit_code == 0, result.output[-2000:]
    report = (out / "report.md").read_text()
    for row in ("llama-greedy (llama-cpp-python", "llama-prompt-lookup (llama-cpp-python", "prompt-lookup"):
        assert row in report
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["backend"] for r in records} == {"decodekit", "llama.cpp"}


def test_the_server_serves_the_llamacpp_backend(smollm2):
    """The server is backend-agnostic: its answer over HTTP is the library's on llama.cpp, and a
    search method (which needs side-by-side rows llama.cpp does not offer) is a clear 400."""
    import httpx
    from serving import serving

    messages = [{"role": "user", "content": PROMPTS[0]}]
    with serving(smollm2, "smollm2-135m", "prompt-lookup", max_tokens=64) as url:
        answer = httpx.post(f"{url}/v1/chat/completions", timeout=300,
                            json={"messages": messages, "max_tokens": 32, "temperature": 0}).json()
        beam = httpx.post(f"{url}/v1/chat/completions", timeout=300,
                          json={"messages": messages, "max_tokens": 8, "decoding": {"method": "beam"}})
    expected = Decoder(smollm2, "prompt-lookup").generate(messages=messages, max_new_tokens=32)
    assert answer["choices"][0]["message"]["content"] == expected.text
    assert beam.status_code == 400 and "backend='hf'" in beam.json()["error"]["message"]
