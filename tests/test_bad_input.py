"""Every bad input gets one clear line: `error: ...` and exit code 2 from the CLI, a one-line
DecodekitError from the API; never a traceback, a wrong exit code or a silently wrong answer.

One table covers both faces so that a new option is checked at both at once. CLI rows are
argument lists in which "{model}", "{dataset}", ... stand for files made once per module (a
tiny model saved to disk, so nothing downloads); API rows are callables on an `Env`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tiny import VOCAB, save_tiny_model, tiny_backend
from typer.testing import CliRunner

import decodekit
from decodekit import DecodekitError, Decoder
from decodekit.cli import app

runner = CliRunner()


@dataclass
class Env:
    decoder: Decoder
    model: str  # the tiny model's folder


@dataclass
class Case:
    id: str
    kind: str  # "cli" or "api"
    given: list[str] | Callable[[Env], object]
    names: str  # a regex the message must match: it names the problem
    stdin: bytes | None = None


def cli(id: str, args: list[str], names: str, stdin: bytes | None = None) -> Case:
    return Case(id, "cli", args, names, stdin)


def api(id: str, call: Callable[[Env], object], names: str) -> Case:
    return Case(id, "api", call, names)


GEN = ["generate", "abc abc abc", "--model", "{model}"]
BENCH = ["bench", "--model", "{model}", "--dataset", "{dataset}", "--out", "{out}"]
TOO_LONG = "x" * 600  # one token per byte: more than the tiny model's 512-token context

CASES = [
    # serve: flags that fail before the model loads (or, for the last, while it loads)
    cli("serve-method-unknown", ["serve", "--model", "{model}", "--method", "warp"], r"unknown method 'warp'"),
    cli("serve-method-auto", ["serve", "--model", "{model}", "--method", "auto"], r"method 'auto' measures"),
    cli("serve-port", ["serve", "--model", "{model}", "--port", "70000"], r"--port must be in 1..65535"),
    cli("serve-max-queue", ["serve", "--model", "{model}", "--max-queue", "-1"], r"--max-queue must be at least 1"),
    cli("serve-max-queue-zero", ["serve", "--model", "{model}", "--max-queue", "0"], r"--max-queue must be at least 1"),
    cli("serve-timeout", ["serve", "--model", "{model}", "--timeout", "0"], r"--timeout must be > 0"),
    cli("serve-max-beams", ["serve", "--model", "{model}", "--max-beams", "0"], r"--max-beams must be at least 1"),
    cli("serve-max-k", ["serve", "--model", "{model}", "--max-k", "-2"], r"--max-k must be at least 1"),
    cli("serve-max-stop-length", ["serve", "--model", "{model}", "--max-stop-length", "0"],
        r"--max-stop-length must be at least 1"),
    cli("serve-amateur-without-strategy", ["serve", "--model", "{model}", "--amateur", "x"],
        r"--amateur goes with a strategy method"),
    cli("serve-draft-without-draft-method", ["serve", "--model", "{model}", "--draft", "x"],
        r"--draft is for methods that draft with a second model"),
    cli("serve-model-unknown", ["serve", "--model", "nosuchmodel"], r"unknown model 'nosuchmodel'"),
    # generate: options that fail before the model loads
    cli("gen-seed-negative", [*GEN, "--seed", "-1"], r"seed must be an integer >= 0, got -1"),
    cli("gen-stop-empty", [*GEN, "--stop", ""], r"stop strings must be non-empty"),
    cli("gen-stdin-not-utf8", ["generate", "-", "--model", "{model}"], r"stdin is not UTF-8.*0xff at offset 0",
        stdin=b"\xff\xfe not text"),
    cli("gen-prompt-empty", ["generate", "  ", "--model", "{model}"], r"prompt is empty"),
    cli("gen-prompt-not-utf8", ["generate", "abc \udcff", "--model", "{model}"], r"prompt is not valid UTF-8"),
    cli("gen-stdin-empty", ["generate", "-", "--model", "{model}"], r"prompt is empty", stdin=b""),
    cli("gen-method-unknown", [*GEN, "--method", "nope"], r"unknown method 'nope'"),
    cli("gen-method-composite-part", [*GEN, "--method", "prompt-lookup+nope"], r"unknown method 'nope' in 'prompt-lookup\+nope'"),
    cli("gen-method-bad-value", [*GEN, "--method", "prompt-lookup[max_ngram=0]"], r"min_ngram <= max_ngram"),
    cli("gen-method-unknown-option", [*GEN, "--method", "prompt-lookup[nope=1]"],
        r"prompt-lookup.*no option 'nope'.*max_ngram"),
    cli("gen-method-wrong-type", [*GEN, "--method", "prompt-lookup[max_ngram=abc]"], r"max_ngram must be an integer, got 'abc'"),
    cli("gen-method-malformed", [*GEN, "--method", "aded[x]"], r"'x' is not key=value"),
    cli("gen-method-unclosed", [*GEN, "--method", "aded[x=1"], r"cannot read method"),
    cli("gen-method-composite-options", [*GEN, "--method", "ar+prompt-lookup[max_draft=2]"], r"composite"),
    cli("gen-auto-options", [*GEN, "--method", "auto[max_draft=2]"], r"auto.*no method options"),
    cli("gen-top-p-zero", [*GEN, "--top-p", "0"], r"top_p must be in \(0, 1\]"),
    # strategies and their samplers
    cli("gen-cd-alpha", [*GEN, "--method", "contrastive-decoding[alpha=2]", "--amateur", "{model}"],
        r"alpha .* must be in \[0, 1\], got 2"),
    cli("gen-cd-without-amateur", [*GEN, "--method", "contrastive-decoding"], r"needs amateur="),
    cli("gen-cd-amateur-other-tokenizer", [*GEN, "--method", "contrastive-decoding", "--amateur", "{other_tokenizer}"],
        r"does not share the tokenizer"),
    cli("gen-dola-layer-out-of-range", [*GEN, "--method", "dola[dola_layers=9]"], r"layer 9 is out of range.*2 decoder"),
    cli("gen-dola-layers-unknown", [*GEN, "--method", "dola[dola_layers=middle]"], r"dola_layers must be 'low', 'high'"),
    cli("gen-drafter-without-strategy", [*GEN, "--drafter", "token-recycling"], r"--drafter goes with a strategy"),
    cli("gen-drafter-is-a-strategy", [*GEN, "--method", "dola", "--drafter", "mirostat"], r"drafter must be a drafting"),
    cli("gen-amateur-for-dola", [*GEN, "--method", "dola", "--amateur", "{model}"], r"--amateur is for contrastive"),
    cli("gen-mirostat-greedy", [*GEN, "--method", "mirostat"], r"mirostat samples: set temperature > 0"),
    cli("gen-mirostat-tau", [*GEN, "--method", "mirostat[tau=0]", "--temperature", "1"], r"tau .* must be > 0"),
    cli("gen-sampler-unknown", [*GEN, "--sampler", "beam", "--temperature", "1"], r"--sampler must be eta or epsilon"),
    cli("gen-sampler-greedy", [*GEN, "--sampler", "eta"], r"eta and epsilon sampling sample.*--temperature"),
    cli("gen-eta-cutoff-too-big", [*GEN, "--eta-cutoff", "2", "--temperature", "1"], r"eta_cutoff must be in \[0, 1\)"),
    # draft models
    cli("gen-draft-model-without-draft", [*GEN, "--method", "draft-model"], r"'draft-model' needs a draft model.*--draft"),
    cli("gen-draft-for-a-method-without-one", [*GEN, "--method", "prompt-lookup", "--draft", "{model}"],
        r"--draft is for methods that draft with a second model.*not 'prompt-lookup'"),
    cli("gen-draft-model-bad-stop", [*GEN, "--method", "draft-model[stop=never]", "--draft", "{model}"],
        r"stop must be one of cost, threshold, fixed"),
    cli("gen-draft-model-missing", [*GEN, "--method", "spectr", "--draft", "{missing}"], r"missing"),
    cli("gen-draft-other-tokenizer", [*GEN, "--method", "rsd", "--draft", "{other_tokenizer}"],
        r"does not share the tokenizer"),
    cli("gen-self-spec-bad-speedup", [*GEN, "--method", "self-spec[speedup=0.5]"], r"speedup must be a finite number >= 1"),
    cli("gen-layer-skip-too-fast", [*GEN, "--method", "layer-skip[speedup=4]"], r"speedup"),
    cli("gen-top-p-big", [*GEN, "--top-p", "1.5"], r"top_p must be in \(0, 1\]"),
    cli("gen-top-k-negative", [*GEN, "--top-k", "-1"], r"top_k must be >= 0"),
    cli("gen-min-p-one", [*GEN, "--min-p", "1"], r"min_p must be in \[0, 1\)"),
    cli("gen-typical-p-zero", [*GEN, "--typical-p", "0"], r"typical_p must be in \(0, 1\]"),
    cli("gen-temperature-negative", [*GEN, "--temperature", "-1"], r"temperature must be >= 0"),
    cli("gen-temperature-nan", [*GEN, "--temperature", "nan"], r"temperature must be a finite number"),
    cli("gen-temperature-inf", [*GEN, "--temperature", "inf"], r"temperature must be a finite number"),
    cli("gen-temperature-tiny", [*GEN, "--temperature", "1e-40"], r"temperature must be 0 \(greedy\) or >= 1e-06"),
    cli("gen-max-new-tokens-zero", [*GEN, "-n", "0"], r"max_new_tokens must be an integer >= 1"),
    cli("gen-not-a-number", [*GEN, "-n", "ten"], r"--max-new-tokens.*integer"),
    cli("gen-unknown-flag", [*GEN, "--temprature", "1"], r"No such option: --temprature"),
    cli("unknown-command", ["nosuchcommand"], r"No such command 'nosuchcommand'"),
    cli("gen-no-prompt", ["generate"], r"(?i)missing argument 'prompt'"),
    cli("gen-threads-zero", [*GEN, "--threads", "0"], r"threads must be an integer >= 1"),
    cli("gen-dtype-unknown", [*GEN, "--dtype", "int4"], r"unknown dtype 'int4'"),
    cli("gen-device-unknown", [*GEN, "--device", "tpu"], r"device 'tpu'.*cpu, cuda or cuda:N"),
    cli("gen-device-no-such-gpu", [*GEN, "--device", "cuda:99"], r"cuda:99"),
    *([] if torch.cuda.is_available() else
      [cli("gen-device-cuda-without-gpu", [*GEN, "--device", "cuda"], r"no CUDA GPU")]),
    cli("gen-model-unknown", ["generate", "hi", "--model", "nosuchmodel"], r"unknown model 'nosuchmodel'"),
    cli("gen-model-empty", ["generate", "hi", "--model", ""], r"model name is empty"),
    cli("gen-model-missing-folder", ["generate", "hi", "--model", "{missing}"], r"no such folder or file"),
    cli("gen-model-not-a-model", ["generate", "hi", "--model", "{not_a_model}"], r"not a Hugging Face model folder"),
    # generate: constraints
    cli("gen-json-schema-missing", [*GEN, "--json-schema", "{missing}"], r"--json-schema: cannot read .*missing"),
    cli("gen-json-schema-invalid", [*GEN, "--json-schema", "{bad_schema}"], r"invalid or unsupported json schema.*strin"),
    cli("gen-json-schema-not-json", [*GEN, "--json-schema", "{bad_dataset}"], r"JSON schema is not valid JSON"),
    cli("gen-json-lenient-alone", [*GEN, "--json-lenient"], r"--json-lenient goes with --json-schema"),
    cli("gen-regex-invalid", [*GEN, "--regex", "a(b"], r"invalid or unsupported regex.*unclosed group"),
    cli("gen-grammar-missing", [*GEN, "--grammar", "{missing}"], r"--grammar: cannot read"),
    cli("gen-grammar-invalid", [*GEN, "--grammar", "{bad_grammar}"], r'unknown name: "bar"'),
    cli("gen-two-constraints", [*GEN, "--regex", "a", "--grammar", "{bad_grammar}"], r"at most one of"),
    # generate: found only once the model has tokenized the prompt
    cli("gen-prompt-too-long", ["generate", TOO_LONG, "--raw", "--model", "{model}"], r"context of 512"),
    # models
    cli("models-pull-unknown", ["models", "pull", "nosuchmodel"], r"unknown model 'nosuchmodel'"),
    cli("models-pull-bad-dtype", ["models", "pull", "smollm2-135m", "--dtype", "int4"], r"unknown dtype 'int4'"),
    cli("models-path-no-name", ["models", "path"], r"(?i)missing argument 'name'"),
    cli("models-path-not-pulled", ["models", "path", "smollm2-135m"], r"not pulled yet.*models pull smollm2-135m"),
    # bench
    cli("bench-method-unknown", [*BENCH, "--methods", "ar,nope"], r"unknown method 'nope'"),
    cli("bench-methods-empty", [*BENCH, "--methods", ""], r"no methods to benchmark"),
    cli("bench-method-composite-part", [*BENCH, "--methods", "ar,ar+nope"], r"unknown method 'nope'"),
    cli("bench-method-twice", [*BENCH, "--methods", "ar,prompt-lookup,prompt-lookup"], r"listed twice"),
    cli("bench-method-bad-option", [*BENCH, "--methods", "ar,prompt-lookup[max_draft=0]"], r"max_draft must be >= 1"),
    cli("bench-draft-method-without-draft", [*BENCH, "--methods", "ar,draft-model"], r"needs a draft model"),
    cli("bench-ar-dtype-unknown", [*BENCH, "--methods", "ar,ar@int8"], r"ar@int8.*ar@DTYPE"),
    cli("bench-dtype-auto", [*BENCH, "--dtype", "auto"], r"a benchmark compares model forms itself"),
    cli("bench-quant-auto", [*BENCH, "--backend", "llama.cpp", "--quant", "auto"],
        r"a benchmark compares model forms itself"),
    cli("bench-quality-dtype-auto", ["bench-quality", "--model", "{model}", "--dtype", "auto"],
        r"a benchmark compares model forms itself"),
    cli("gen-quant-on-hf", [*GEN, "--quant", "own"], r"quant= re-quantises a GGUF for the llama.cpp backend"),
    cli("bench-quant-with-variant-rows", [*BENCH, "--backend", "llama.cpp", "--quant", "q8_0", "--methods",
                                           "ar,copy-spec@q4_0"], r"--quant sets the weight type of every row"),
    cli("bench-method-unknown-option", [*BENCH, "--methods", "ar,aded[nope=1]"], r"aded.*no option 'nope'"),
    cli("bench-baseline-options", [*BENCH, "--methods", "ar,hf-greedy[x=1]"], r"baselines take no options"),
    cli("bench-repeats-zero", [*BENCH, "--repeats", "0"], r"repeats must be >= 1"),
    cli("bench-per-category-zero", [*BENCH, "--per-category", "0"], r"--per-category must be >= 1"),
    cli("bench-max-new-tokens-zero", [*BENCH, "--max-new-tokens", "0"], r"max_new_tokens must be >= 1"),
    cli("bench-categories-unknown", [*BENCH, "--categories", "poetry"], r"unknown category poetry"),
    # click keeps the last --dataset given
    cli("bench-dataset-missing", [*BENCH, "--dataset", "{missing}"], r"dataset file not found"),
    cli("bench-dataset-bad-line", [*BENCH, "--dataset", "{bad_dataset}"], r"line 2 is not valid JSON"),
    cli("bench-hf-assisted-without-draft", [*BENCH, "--methods", "ar,hf-assisted"], r"needs a draft model.*--draft"),
    cli("bench-temperature-negative", [*BENCH, "--temperature", "-1"], r"temperature must be >= 0"),
    cli("bench-dtype-unknown", [*BENCH, "--dtype", "int4"], r"unknown dtype 'int4'"),
    cli("bench-threads-zero", [*BENCH, "--threads", "0"], r"threads must be an integer >= 1"),
    cli("bench-strategy-unknown", [*BENCH, "--strategy", "nope"], r"unknown strategy 'nope'"),
    cli("bench-strategy-with-baseline", [*BENCH, "--strategy", "dola", "--methods", "ar,hf-greedy"],
        r"with --strategy every row decodes with dola.*hf-greedy"),
    cli("bench-amateur-without-strategy", [*BENCH, "--amateur", "{model}"], r"--amateur goes with --strategy"),
    # API: prompt ids
    api("ids-empty", lambda e: e.decoder.generate(prompt_ids=[]), r"prompt_ids is empty"),
    api("ids-negative", lambda e: e.decoder.generate(prompt_ids=[5, -1]), r"holds -1.*\[0, 258\)"),
    api("ids-vocab-size", lambda e: e.decoder.generate(prompt_ids=[VOCAB]), r"holds 258.*\[0, 258\)"),
    api("ids-float", lambda e: e.decoder.generate(prompt_ids=[1.5]), r"holds 1\.5"),
    api("ids-str", lambda e: e.decoder.generate(prompt_ids=["a"]), r"holds 'a'"),
    api("ids-bool", lambda e: e.decoder.generate(prompt_ids=[True]), r"holds True"),
    api("ids-a-string", lambda e: e.decoder.generate(prompt_ids="abc"), r"prompt_ids must be a list of token ids"),
    api("ids-too-long", lambda e: e.decoder.generate(prompt_ids=[7] * 600), r"600 tokens.*context of 512"),
    api("ids-fill-the-context", lambda e: e.decoder.generate(prompt_ids=[7] * 512), r"512 tokens.*context of 512"),
    api("ids-and-prompt", lambda e: e.decoder.generate("a", prompt_ids=[7]), r"only one of"),
    # API: generation options
    api("option-typo", lambda e: e.decoder.generate("hi", temprature=0.5), r"unknown option 'temprature'"),
    api("top-k-float", lambda e: e.decoder.generate("hi", top_k=2.5), r"top_k must be an integer"),
    api("top-p-str", lambda e: e.decoder.generate("hi", top_p="0.9"), r"top_p must be a finite number"),
    api("temperature-nan", lambda e: e.decoder.generate("hi", temperature=float("nan")), r"temperature must be a finite"),
    api("max-new-tokens-zero", lambda e: e.decoder.generate("hi", max_new_tokens=0), r"max_new_tokens.*got 0"),
    api("max-new-tokens-str", lambda e: e.decoder.generate("hi", max_new_tokens="10"), r"max_new_tokens.*got '10'"),
    api("max-new-tokens-bool", lambda e: e.decoder.generate("hi", max_new_tokens=True), r"max_new_tokens.*got True"),
    api("temperature-tiny", lambda e: e.decoder.generate("hi", temperature=1e-40, seed=0), r"temperature must be 0"),
    api("seed-negative", lambda e: e.decoder.generate("hi", seed=-1), r"seed must be an integer >= 0"),
    api("seed-float", lambda e: e.decoder.generate("hi", seed=1.5), r"seed must be an integer >= 0"),
    api("stop-a-string", lambda e: e.decoder.generate("hi", stop="###"), r"stop must be a list of strings"),
    api("stop-a-blank-string", lambda e: e.decoder.generate("hi", stop=""), r"stop must be a list of strings"),
    api("stop-empty-string", lambda e: e.decoder.generate("hi", stop=[""]), r"stop strings must be non-empty"),
    api("stop-not-str", lambda e: e.decoder.generate("hi", stop=[3]), r"stop strings must be non-empty strings"),
    # API: prompts and messages
    api("prompt-and-messages", lambda e: e.decoder.generate("a", messages=[{"role": "user", "content": "a"}]),
        r"exactly one of prompt= or messages="),
    api("no-prompt", lambda e: e.decoder.generate(), r"exactly one of prompt= or messages="),
    api("prompt-empty", lambda e: e.decoder.generate(""), r"the prompt is empty"),
    api("prompt-not-str", lambda e: e.decoder.generate(123), r"the prompt must be a string, got int"),
    api("prompt-not-utf8", lambda e: e.decoder.generate("abc \udcff"), r"prompt is not valid UTF-8"),
    api("prompt-too-long", lambda e: e.decoder.generate(TOO_LONG), r"context of 512"),
    api("messages-empty", lambda e: e.decoder.generate(messages=[]), r"messages must be a non-empty list"),
    api("messages-a-string", lambda e: e.decoder.generate(messages="hi"), r"messages must be a non-empty list"),
    api("messages-no-role", lambda e: e.decoder.generate(messages=[{"content": "a"}]), r"string 'role' and 'content'"),
    api("messages-content-not-str", lambda e: e.decoder.generate(messages=[{"role": "user", "content": 5}]),
        r"string 'role' and 'content'"),
    api("messages-not-utf8", lambda e: e.decoder.generate(messages=[{"role": "user", "content": "\udcff"}]),
        r"content of a 'user' message is not valid UTF-8"),
    api("stream-bad-option", lambda e: e.decoder.stream("hi", top_k=-1), r"top_k must be >= 0"),
    # API: methods and models
    api("method-unknown", lambda e: Decoder(e.decoder.backend, "nope"), r"unknown method 'nope'"),
    api("method-composite-part", lambda e: Decoder(e.decoder.backend, "ar+nope"), r"unknown method 'nope' in 'ar\+nope'"),
    api("method-not-str", lambda e: Decoder(e.decoder.backend, None), r"method must be a string"),
    api("method-bad-option", lambda e: Decoder(e.decoder.backend, "copy-spec", gamma=0), r"gamma >= 1"),
    api("method-unknown-option", lambda e: Decoder(e.decoder.backend, "lookahead", windw=4),
        r"lookahead.*no option 'windw'.*window"),
    api("method-option-wrong-type", lambda e: Decoder(e.decoder.backend, "token-recycling", k="8"),
        r"token-recycling.*k must be an integer, got '8'"),
    api("method-option-not-finite", lambda e: Decoder(e.decoder.backend, "aded", exploration=float("nan")),
        r"exploration must be a finite number"),
    api("method-option-not-bool", lambda e: Decoder(e.decoder.backend, "prompt-lookup", adaptive=3),
        r"adaptive must be true or false"),
    api("method-option-out-of-range", lambda e: Decoder(e.decoder.backend, "lookahead", pool_size=-1),
        r"pool_size must be >= 0"),
    api("composite-options", lambda e: Decoder(e.decoder.backend, "ar+aded", branching=2), r"composite"),
    api("auto-options", lambda e: Decoder(e.decoder.backend, "auto", sample=["hi"], max_draft=2),
        r"auto.*no method options"),
    api("auto-without-sample", lambda e: Decoder(e.decoder.backend, "auto"), r"auto.*needs sample="),
    api("auto-sample-a-string", lambda e: Decoder(e.decoder.backend, "auto", sample="abc abc"),
        r"needs sample=.*got 'abc abc'"),
    api("model-unknown", lambda e: Decoder("nosuchmodel"), r"unknown model 'nosuchmodel'"),
    api("model-not-str", lambda e: Decoder(123), r"model must be a zoo name"),
    api("method-options-not-dict", lambda e: decodekit.generate("hi", model=e.model, method_options="x"),
        r"method_options must be a dict"),
    api("model-dtype-unknown", lambda e: decodekit.generate("hi", model=e.model, dtype="int4"), r"unknown dtype 'int4'"),
    api("model-threads-zero", lambda e: Decoder(e.model, threads=0), r"threads must be an integer >= 1"),
    # API: constraints
    api("heal-not-bool", lambda e: e.decoder.generate("hi", heal="yes"), r"heal must be True or False"),
    api("response-format-type", lambda e: e.decoder.generate("hi", response_format={"type": "yaml"}), r"'yaml'"),
    api("response-format-no-schema", lambda e: e.decoder.generate("hi", response_format={"type": "json_schema"}),
        r'needs "json_schema"'),
    api("json-schema-false", lambda e: e.decoder.generate("hi", response_format={
        "type": "json_schema", "json_schema": {"schema": False}}), r"matches nothing"),
    api("regex-not-str", lambda e: e.decoder.generate("hi", regex=5), r"regex must be a non-empty string"),
    api("grammar-not-str", lambda e: e.decoder.generate("hi", grammar=["x"]), r"grammar must be Lark or GBNF text"),
    api("stream-bad-grammar", lambda e: e.decoder.stream("hi", grammar="start: nothing"), r"unknown name"),
    api("choices-one", lambda e: e.decoder.score_choices("Q: a or b? A:", [" a"]), r"at least two strings"),
    api("choices-same", lambda e: e.decoder.score_choices("Q: a or b? A:", [" a", " a"]), r"must differ"),
    api("choices-calibrate-no-content", lambda e: e.decoder.score_choices("Q: x? A:", [" a", " b"], calibrate=True),
        r"calibrate=True needs content="),
    api("choices-content-not-in-prompt", lambda e: e.decoder.score_choices("Q: x? A:", [" a", " b"], calibrate=True,
                                                                           content="zzz"), r"needs content="),
    api("eta-cutoff-negative", lambda e: e.decoder.generate("hi", temperature=1.0, eta_cutoff=-1), r"eta_cutoff"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-input")
    model = root / "tiny-llama"
    save_tiny_model(model)
    (root / "not-a-model").mkdir()
    other = root / "other-tokenizer"  # the same tiny model behind a tokenizer with other ids
    save_tiny_model(other, reverse_tokenizer=True)
    dataset = root / "q.jsonl"
    dataset.write_text(json.dumps({"question_id": 1, "category": "qa", "turns": ["abc abc"]}) + "\n")
    (root / "bad-schema.json").write_text('{"type": "strin"}')
    (root / "bad.lark").write_text('start: foo\nfoo: "x" bar\n')
    bad = root / "bad.jsonl"
    bad.write_text(dataset.read_text() + "{not json\n")
    return {"{model}": str(model), "{dataset}": str(dataset), "{bad_dataset}": str(bad),
            "{missing}": str(root / "missing"), "{not_a_model}": str(root / "not-a-model"),
            "{out}": str(root / "out"), "{other_tokenizer}": str(other),
            "{bad_schema}": str(root / "bad-schema.json"), "{bad_grammar}": str(root / "bad.lark")}


@pytest.fixture(scope="module")
def env(files) -> Env:
    return Env(Decoder(tiny_backend("llama"), "prompt-lookup"), files["{model}"])


@pytest.fixture(scope="module")
def module_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad-input-home")


@pytest.fixture(autouse=True)
def shared_cache(isolated_cache, module_home, monkeypatch):
    """One cache for the module, so the rows that load the model measure its latency curve
    once, not once per row (conftest's isolated_cache gives each test a fresh one)."""
    monkeypatch.setenv("DECODEKIT_HOME", str(module_home))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_line(case: Case, files, env):
    if case.kind == "cli":
        args = [files.get(arg, arg) for arg in case.given]
        result = runner.invoke(app, args, input=case.stdin)
        assert "Traceback" not in result.output
        assert result.exit_code == 2, result.output
        assert isinstance(result.exception, SystemExit), result.exception
        assert result.stdout == ""  # nothing half-done reaches the output a script reads
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: ")
        assert re.search(case.names, lines[0]), lines[0]
    else:
        with pytest.raises(DecodekitError) as caught:
            outcome = case.given(env)
            if isinstance(outcome, Iterator):  # stream() checks its input on the first next()
                list(outcome)
        message = str(caught.value)
        assert "\n" not in message.strip()
        assert re.search(case.names, message), message


def test_the_table_is_broad():
    kinds = [c.kind for c in CASES]
    assert kinds.count("cli") >= 25 and kinds.count("api") >= 25
    assert len({c.id for c in CASES}) == len(CASES)
