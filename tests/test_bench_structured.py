"""`decodekit bench-structured`: MaskBench coverage and compliance on the vendored sample, the
expected-failures list, and the command end to end.

Fast tests force instances in a one-token-per-byte tokenizer (llguidance's verdicts do not depend
on the tokenization: a full run over MaskBench gives the same verdicts with it as with
SmolLM2's); the slow test runs the command on the real default model.
"""

import json
import shutil
from pathlib import Path

import llguidance.hf
import pytest
from tiny import byte_tokenizer, save_tiny_model
from typer.testing import CliRunner

from decodekit.bench.structured import (
    FileResult,
    Instance,
    InstanceResult,
    SchemaFile,
    compare,
    format_expected_failures,
    load_folder,
    parse_schema_file,
    read_expected_failures,
    rejected_valid,
    run_benchmark,
    run_file,
    shipped_expected_failures,
    subset_of,
)
from decodekit.bench.structured_report import read_results, summarize, write_results
from decodekit.cli import app
from decodekit.errors import DecodekitError

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "maskbench"
TEST_SUITE = DATA / "json_schema_test_suite" / "draft2020-12"
runner = CliRunner()


@pytest.fixture(scope="module")
def tokenizer():
    return llguidance.hf.from_tokenizer(byte_tokenizer())


@pytest.fixture(scope="module")
def sample_results(tokenizer):
    return run_benchmark(load_folder(SAMPLE), tokenizer)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def sample_names() -> set[str]:
    return {p.name for p in SAMPLE.glob("*.json")}


# --- compliance and coverage on the vendored sample --------------------------------------------


def test_sample_refuses_exactly_the_listed_valid_instances_and_accepts_no_invalid_one(sample_results):
    listed = sorted(e for e in read_expected_failures() if e.partition("#")[0] in sample_names())
    assert listed, "the sample must hold files from the expected-failures list, or this test checks nothing"
    # A newly refused valid instance fails here, and so does a listed one that passes now.
    assert rejected_valid(sample_results) == listed
    assert [i for r in sample_results for i in r.invalid_accepted] == []
    judged = [i for r in sample_results for i in r.instances]
    assert sum(not i.valid for i in judged) >= 20 and sum(i.valid and i.accepted for i in judged) >= 15


def test_sample_coverage_per_subset(sample_results):
    compiled = {s.name: (s.compiled, s.files) for s in summarize(sample_results)}
    assert compiled == {"BFCL_simple": (3, 3), "Github_easy": (7, 9), "Github_trivial": (5, 6), "Glaiveai2K": (4, 5),
                        "Handwritten": (1, 3), "MCPspec": (2, 3), "Synthesized": (0, 2), "total": (22, 31)}
    errors = {r.name: r.error for r in sample_results if not r.compiled}
    assert "oneOf" in errors["Glaiveai2K---calculate_area_f97d510a.json"]
    assert "format: byte" in errors["MCPspec---ClientResult.json"]
    assert all(r.compile_ms is None and not r.instances for r in sample_results if not r.compiled)
    assert all(r.compile_ms > 0 and r.error is None for r in sample_results if r.compiled)
    forced = sum(i.tokens for r in sample_results for i in r.instances if i.accepted)
    assert len([t for r in sample_results for t in r.mask_us]) >= forced  # a mask per forced token


def test_subsets_come_from_the_file_names():
    assert subset_of("Github_easy---o10008.json") == "Github_easy"
    assert subset_of("BFCL_simple_12.json") == "BFCL_simple"
    assert subset_of("MCPspec---CallToolRequest.json") == "MCPspec"
    assert subset_of("other.json") == "other"


def test_an_uncompilable_schema_is_recorded_with_its_error_and_nothing_is_forced(tokenizer):
    bad = SchemaFile("bad.json", {"type": "string", "not": {"const": "x"}}, [Instance("y", True), Instance("x", False)])
    result = run_file(bad, tokenizer)
    assert not result.compiled and result.compile_ms is None and result.instances == []
    assert "not" in result.error and "\n" not in result.error
    assert not result.passing
    # a schema json_schema() itself refuses (`false`: nothing to generate) is recorded, not raised
    assert not run_file(SchemaFile("false.json", False, []), tokenizer).compiled
    assert run_file(SchemaFile("true.json", True, [Instance([1, "a"], True)]), tokenizer).passing


def test_instances_are_refused_at_a_token_or_for_not_accepting_at_the_end(tokenizer):
    schema = {"type": "integer", "minimum": 10}
    result = run_file(SchemaFile("n.json", schema, [Instance(50, True), Instance(5, False), Instance("5", False)]), tokenizer)
    accepted, short, string = result.instances
    assert accepted.accepted and accepted.reason is None and accepted.tokens == 2
    assert not short.accepted and "does not accept at the end" in short.reason  # "5" could still become 50
    assert not string.accepted and "token 0 of 3" in string.reason and "refused" in string.reason
    assert result.passing and len(result.mask_us) == 2 + 1 + 1


# The JSON Schema Test Suite's valid instances llguidance refuses, and why.
KNOWN_TEST_SUITE_REFUSALS = {
    # JSON Schema counts 1.0 as an integer (and equal to 1); llguidance's integers have no fraction.
    ("type.json", "integer type matches integers", 1),
    ("const.json", "const with 0 does not match other zero-like types", 2),
    ("const.json", "const with 1 does not match true", 2),
    ("const.json", "const with -2.0 matches integer and float types", 2),
    ("const.json", "float and integers are equal up to 64-bit representation limits", 2),
    ("enum.json", "enum with 0 does not match false", 2),
    ("enum.json", "enum with [0] does not match [false]", 2),
    ("enum.json", "enum with 1 does not match true", 2),
    ("enum.json", "enum with [1] does not match [true]", 2),
    # const objects are written in the schema's key order; JSON Schema ignores the order.
    ("const.json", "const with object", 1),
}


def test_json_schema_test_suite_sample(tokenizer):
    refused, compiled, groups = set(), 0, 0
    for path in sorted(TEST_SUITE.glob("*.json")):
        for group in json.loads(path.read_text()):
            groups += 1
            result = run_file(parse_schema_file(path.name, group), tokenizer)
            compiled += result.compiled
            assert result.invalid_accepted == [], (path.name, group["description"])
            refused |= {(path.name, group["description"], i.index) for i in result.valid_rejected}
    assert refused == KNOWN_TEST_SUITE_REFUSALS
    assert (compiled, groups) == (48, 50)  # not compiled: an empty enum, minLength 2.0


# --- the expected-failures list ---------------------------------------------------------------


def _result(name: str, *instances: tuple[bool, bool], compiled: bool = True) -> FileResult:
    return FileResult(name, subset_of(name), compiled,
                      instances=[InstanceResult(i, valid, accepted, 3) for i, (valid, accepted) in enumerate(instances)])


def test_compare_names_new_fixed_untested_and_accepted_invalid():
    results = [_result("a---1.json", (True, False), (True, True), (False, True)),
               _result("a---2.json", compiled=False), _result("a---3.json", (True, True))]
    expected = {"a---1.json#1", "a---2.json#0", "a---3.json#5", "other---9.json#0"}
    comparison = compare(results, expected)
    assert comparison.new_failures == ["a---1.json#0"]
    assert comparison.fixed == ["a---1.json#1"]
    assert comparison.untested == ["a---2.json#0", "a---3.json#5"]  # files not in the run are ignored
    assert comparison.invalid_accepted == ["a---1.json#2"]
    assert comparison.failed
    assert not compare([_result("a---1.json", (True, False), (False, False))], {"a---1.json#0"}).failed


def test_expected_failures_file_round_trips_and_rejects_bad_lines(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text(format_expected_failures(["b.json#2", "a.json#10"], "a test"))
    assert read_expected_failures(path) == {"a.json#10", "b.json#2"}
    lines = path.read_text().splitlines()
    assert lines[-2:] == ["a.json#10", "b.json#2"] and all(line.startswith("#") for line in lines[:-2])
    path.write_text("a.json#1\nGithub_easy---o1.json 2\n")
    with pytest.raises(DecodekitError, match=r":2: expected FILE\.json#INDEX"):
        read_expected_failures(path)


def test_the_shipped_list_is_sorted_and_well_formed():
    entries = [line for line in shipped_expected_failures().read_text().splitlines() if line and not line.startswith("#")]
    assert entries == sorted(entries) and len(set(entries)) == len(entries) == len(read_expected_failures())


def test_results_round_trip(sample_results, tmp_path):
    write_results(tmp_path / "r.jsonl", sample_results)
    back = read_results(tmp_path / "r.jsonl")
    assert [r.name for r in back] == [r.name for r in sample_results]
    assert [r.instances for r in back] == [r.instances for r in sample_results]
    assert rejected_valid(back) == rejected_valid(sample_results)


# --- the command ------------------------------------------------------------------------------


def test_command_end_to_end(model_dir, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["bench-structured", str(SAMPLE), "--model", str(model_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"results.jsonl", "report.md", "expected_failures.txt"}
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 31 and {r["subset"] for r in records} >= {"Github_easy", "Synthesized", "BFCL_simple"}
    report = (out / "report.md").read_text()
    for needle in ["PASS", "| Github_easy |", "**total**", "expected_maskbench.json", "Github_easy---o21053.json#0",
                   "Unimplemented keys", "llguidance 0.6.7"]:
        assert needle in report, needle
    assert read_expected_failures(out / "expected_failures.txt") == {
        e for e in read_expected_failures() if e.partition("#")[0] in sample_names()}


def test_command_fails_on_a_new_failure_and_reports_fixed_ones(model_dir, tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text("Github_easy---o21053.json#1\nBFCL_simple_179.json#0\n")  # #0 missing; BFCL passes
    result = runner.invoke(app, ["bench-structured", str(SAMPLE), "--model", str(model_dir), "--out", str(tmp_path / "o"),
                                 "--expected-failures", str(listed)])
    assert result.exit_code == 1, result.output
    assert "new failures" in result.output and "Github_easy---o21053.json#0" in result.output
    assert "remove it from the list" in result.output and "BFCL_simple_179.json#0" in result.output
    assert "FAIL" in (tmp_path / "o" / "report.md").read_text()


def test_a_subset_run_whole_must_compile_and_pass_as_many_schemas_as_llguidance_publishes():
    from decodekit.bench.structured import FileResult
    from decodekit.bench.structured_report import PUBLISHED_SUBSETS, below_published

    files, compiled, _ = PUBLISHED_SUBSETS["MCPspec"]
    results = [FileResult(f"MCPspec---s{i}.json", "MCPspec", compiled=i < compiled) for i in range(files)]
    assert below_published(results) == []
    results[0].compiled = False
    assert below_published(results) and "MCPspec: 34 compiled" in below_published(results)[0]
    assert below_published(results[1:]) == []  # not the whole subset: nothing to compare with


def test_generate_validates_outputs_and_compares_speed(model_dir, tmp_path):
    out = tmp_path / "o"
    result = runner.invoke(app, ["bench-structured", str(SAMPLE), "--model", str(model_dir), "--out", str(out),
                                 "--generate", "3", "--max-new-tokens", "24", "--speed", "2", "--methods",
                                 "prompt-lookup,token-recycling[adaptive=false,k=4]"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "generation.jsonl").read_text().splitlines()]
    assert [r["mode"] for r in records] == ["greedy", "t=1.0"] * 3
    assert len({r["subset"] for r in records}) == 3  # round-robin over the subsets
    # A constrained output is never invalid: it is valid, or cut short and counted apart.
    assert all(r["verdict"] in ("valid", "truncated", "unchecked") for r in records)
    assert all((r["verdict"] == "truncated") == (not r["completed"]) for r in records)
    assert sum(r["unconstrained_tokens"] > 0 for r in records) == 2
    compared = [r["methods"] for r in records if r["methods"]]
    assert len(compared) == 2 and all(set(m) == {"prompt-lookup", "token-recycling[adaptive=false,k=4]"} for m in compared)
    assert all(run["identical"] and run["explained"] is None for m in compared for run in m.values())
    report = (out / "report.md").read_text()
    assert "## Generation under the schemas" in report and "| greedy | 3 |" in report
    assert "| prompt-lookup | 2 | 2 | 0 | 0 |" in report


def test_limit_runs_the_first_files_by_name(model_dir, tmp_path):
    result = runner.invoke(app, ["bench-structured", str(SAMPLE), "--model", str(model_dir), "--out", str(tmp_path / "o"),
                                 "--limit", "2"])
    assert result.exit_code == 0, result.output
    names = [json.loads(line)["name"] for line in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert names == ["BFCL_simple_179.json", "BFCL_simple_267.json"]


def _folder_with(tmp_path, name: str, text: str) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(SAMPLE / "BFCL_simple_179.json", folder)
    (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize(
    "make, extra, message",
    [
        (lambda tmp: tmp / "nowhere", [], "no such folder"),
        (lambda tmp: SAMPLE / "README.md", [], "is not a folder"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", [], "no .json files"),
        (lambda tmp: _folder_with(tmp, "broken.json", '{"schema": {'), [], "broken.json is not valid JSON"),
        (lambda tmp: _folder_with(tmp, "list.json", "[1, 2]"), [], "not a MaskBench file"),
        (lambda tmp: _folder_with(tmp, "t.json", '{"schema": {}, "tests": [{"data": 1}]}'), [], 'boolean "valid"'),
        (lambda tmp: SAMPLE, ["--limit", "0"], "--limit must be >= 1"),
        (lambda tmp: SAMPLE, ["--expected-failures", "/nonexistent/list.txt"], "cannot read the expected-failures file"),
        (lambda tmp: SAMPLE, ["--generate", "-1"], "--generate must be >= 0"),
        (lambda tmp: SAMPLE, ["--generate", "2", "--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
        (lambda tmp: SAMPLE, ["--generate", "2", "--methods", "prompt-lookup,nope"], "unknown method 'nope'"),
        (lambda tmp: SAMPLE, ["--generate", "2", "--method", "prompt-lookup[max_draft=0]"], "max_draft must be >= 1"),
        (lambda tmp: SAMPLE, ["--methods", "prompt-lookup"], "give --generate N too"),
    ],
)
def test_bad_input_exits_2_with_one_line(model_dir, tmp_path, make, extra, message):
    out = tmp_path / "out"
    result = runner.invoke(app, ["bench-structured", str(make(tmp_path)), "--model", str(model_dir), "--out", str(out),
                                 *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (out / "report.md").exists()


@pytest.mark.slow
def test_command_on_the_default_model(tmp_path):
    """SmolLM2's real tokenizer: the same verdicts as the byte tokenizer gives."""
    out = tmp_path / "out"
    result = runner.invoke(app, ["bench-structured", str(SAMPLE), "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = read_results(out / "results.jsonl")
    assert rejected_valid(results) == sorted(e for e in read_expected_failures() if e.partition("#")[0] in sample_names())
    assert all(not r.invalid_accepted for r in results)
    assert "smollm2-135m" in (out / "report.md").read_text()
