"""MaskBench without a model: does llguidance compile each schema (coverage), does it accept every
valid instance and refuse every invalid one when the instance is forced through it token by token
(compliance), and how long do the compile and each token's mask take.

A MaskBench file (JSONSchemaBench, https://github.com/guidance-ai/jsonschemabench, maskbench/data)
is `{"description", "meta", "schema", "tests": [{"data", "valid", "description"?}, ...]}`; its
subset is the name's prefix before `---` (`Github_easy---o10008.json`) or before `_<number>.json`
(`BFCL_simple_12.json`).

How llguidance runs MaskBench, and what is mirrored here
--------------------------------------------------------
Read at guidance-ai/jsonschemabench ba103c73 and guidance-ai/llguidance c75b0d90 (1.8.0 + 1).

* The Python runner that produced MaskBench's published tables (jsonschemabench
  `maskbench/maskbench/runner.py` and `llg_engine.py`):
  grammar `LLMatcher(tok, json.dumps({"grammars": [{"json_schema": schema}]}))`, that is
  llguidance's default JSON options: whitespace_flexible=True, lenient=False, coerce_one_of=False,
  separators "," and ":" with any JSON whitespace around them; tokenizer
  `llguidance.hf.from_tokenizer(AutoTokenizer("unsloth/Meta-Llama-3.1-8B-Instruct"))` (default
  slices); instance `json.dumps(data, indent=None, ensure_ascii=False)` (so ", " and ": "), tokens
  `tokenizer.encode(text, add_special_tokens=False)`; one matcher per schema and a `deep_copy()`
  per instance; per token fill_next_token_bitmask, the token's bit, consume_token, timed together
  as that token's mask time ("TBM"); "TTFM" is the LLMatcher construction. An instance passes when
  every token is allowed: it does not ask whether the matcher accepts at the end.
* The Rust harness llguidance runs in CI (llguidance `json_stats/src/json_stats.rs --llg-masks`,
  expected per-file results in `json_stats/expected_maskbench.json`): the same options (compact
  whitespace only with --compact, lenient only with --lenient), the instance written compactly
  (`serde_json::to_string`: no spaces, keys in file order), tokens from the tokenizer's own
  encoding; forced tokens are compared with compute_ff_tokens instead of a mask; a valid instance
  must also leave the parser accepting and an invalid one must be refused somewhere or end not
  accepting. Its TTFM is JSON compile + parser creation + first mask.

Here: `json_schema(schema, whitespace_flexible=True)` (llguidance's defaults otherwise, as both
harnesses), instances written as the Python runner writes them, token ids from
`LLTokenizer.tokenize_str` (the Rust `tokenizers` encoding of the model's own tokenizer: the ids
of `encode(text, add_special_tokens=False)`), a fresh matcher per instance (a `deep_copy()` of one
never advanced), and the Rust harness's stricter verdict (accepting, i.e. EOS allowed, at the
end). Compile time is `json_schema()` + `LLMatcher()`; the mask time is
`fill_next_token_bitmask` alone, for every token forced (valid and invalid instances, up to the
refusal), none skipped as forced. A schema compiles when the matcher is built without an error
(what decodekit's `check()` tests too). The
tokenizer is the model's as decodekit's backend wraps it (llguidance's default slices, as the
Python runner).

Measured on the 5,045 files of the seven subsets (11,201 instances; llguidance 1.9.1): the
verdicts are the same whether instances are written with ", "/": " or compactly, whether they are
tokenized by SmolLM2's tokenizer or one token per byte, and whether each instance gets a
`deep_copy()` or a matcher built anew (59 s instead of 20 s for the run). A copy shares the
compiled grammar and the lexer's cache with its original, as in both harnesses: where a lexer
limit is hit (Github_easy---o21053.json) later copies fail at their first token, not their fifth.

An instance is named `FILE#INDEX`, INDEX its 0-based place in the file's "tests" (invalid ones
counted too), as in `Github_easy---o10008.json#2`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import llguidance
import numpy as np
from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

from decodekit.errors import DecodekitError
from decodekit.grammar import GrammarError, first_line, json_schema

# Both of llguidance's harnesses compile with llguidance's default JSON options (see above);
# json_schema() would otherwise apply decodekit's compact one-line defaults.
MASKBENCH_OPTIONS: dict[str, Any] = {"whitespace_flexible": True}
EXPECTED_FAILURES = "maskbench_expected_failures.txt"
_NUMBERED = re.compile(r"^(?P<subset>.+)_\d+\.json$")
_INSTANCE_ID = re.compile(r"^[^\s#]+\.json#\d+$")


@dataclass(frozen=True)
class Instance:
    data: Any
    valid: bool


@dataclass(frozen=True)
class SchemaFile:
    name: str  # the file name, e.g. Github_easy---o10008.json
    schema: Any
    instances: list[Instance]

    @property
    def subset(self) -> str:
        return subset_of(self.name)


@dataclass
class InstanceResult:
    index: int  # place in the file's "tests"
    valid: bool  # the label
    accepted: bool  # every token allowed and the matcher accepting at the end
    tokens: int  # tokens of the serialized instance
    reason: str | None = None  # where and why it was refused

    @property
    def correct(self) -> bool:
        return self.accepted == self.valid


@dataclass
class FileResult:
    name: str
    subset: str
    compiled: bool
    error: str | None = None  # why the schema did not compile
    compile_ms: float | None = None
    instances: list[InstanceResult] = field(default_factory=list)
    mask_us: list[float] = field(default_factory=list)  # one per forced token, all instances

    @property
    def valid_rejected(self) -> list[InstanceResult]:
        return [r for r in self.instances if r.valid and not r.accepted]

    @property
    def invalid_accepted(self) -> list[InstanceResult]:
        return [r for r in self.instances if not r.valid and r.accepted]

    @property
    def passing(self) -> bool:
        """Compiled and judged every instance right: MaskBench's "passing" schema."""
        return self.compiled and all(r.correct for r in self.instances)

    def to_json(self) -> str:
        record = asdict(self)
        record["mask_us"] = [round(t, 2) for t in self.mask_us]
        return json.dumps(record, ensure_ascii=False)

    @classmethod
    def from_dict(cls, record: dict) -> FileResult:
        instances = [InstanceResult(**r) for r in record.get("instances", [])]
        return cls(**{**record, "instances": instances})


def subset_of(name: str) -> str:
    """The subset a MaskBench file belongs to, from its name.

    >>> subset_of("Github_easy---o10008.json"), subset_of("BFCL_simple_12.json")
    ('Github_easy', 'BFCL_simple')
    """
    if "---" in name:
        return name.split("---", 1)[0]
    numbered = _NUMBERED.match(name)
    return numbered["subset"] if numbered else name.removesuffix(".json")


def instance_id(file_name: str, index: int) -> str:
    """How results, reports and the expected-failures list name an instance.

    >>> instance_id("Github_easy---o10008.json", 2)
    'Github_easy---o10008.json#2'
    """
    return f"{file_name}#{index}"


# --- reading MaskBench files ------------------------------------------------------------------


def list_schema_files(folder: Path, limit: int | None = None) -> list[Path]:
    """The folder's .json files, sorted by name; the first `limit` of them when given."""
    folder = Path(folder)
    if not folder.exists():
        raise DecodekitError(f"no such folder: {folder}")
    if not folder.is_dir():
        raise DecodekitError(f"{folder} is not a folder: pass the folder that holds the MaskBench .json files")
    try:
        paths = sorted(p for p in folder.iterdir() if p.suffix == ".json" and p.is_file())
    except OSError as error:
        raise DecodekitError(f"cannot read the folder {folder}: {error.strerror}") from error
    if not paths:
        raise DecodekitError(f"no .json files in {folder}: expected MaskBench files such as Github_easy---o10008.json")
    if limit is not None:
        if limit < 1:
            raise DecodekitError(f"--limit must be >= 1, got {limit}")
        paths = paths[:limit]
    return paths


def read_schema_file(path: Path) -> SchemaFile:
    """One MaskBench file; anything else is a DecodekitError naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise DecodekitError(f"cannot read {path}: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise DecodekitError(f"{path} is not UTF-8 text: {error.reason}") from error
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise DecodekitError(f"{path} is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})") from None
    return parse_schema_file(Path(path).name, content, where=str(path))


def parse_schema_file(name: str, content: Any, where: str | None = None) -> SchemaFile:
    where = where or name
    if not isinstance(content, dict) or "schema" not in content:
        raise DecodekitError(f'{where} is not a MaskBench file: expected an object with "schema" and "tests"')
    tests = content.get("tests", [])  # about 1.5k MaskBench schemas come without instances
    if not isinstance(tests, list):
        raise DecodekitError(f'{where}: "tests" must be a list, got {type(tests).__name__}')
    instances = []
    for index, test in enumerate(tests):
        if not isinstance(test, dict) or "data" not in test or not isinstance(test.get("valid"), bool):
            raise DecodekitError(f'{where}: test #{index} needs "data" and a boolean "valid"')
        instances.append(Instance(test["data"], test["valid"]))
    return SchemaFile(name, content["schema"], instances)


def load_folder(folder: Path, limit: int | None = None) -> list[SchemaFile]:
    """Every file read and checked up front, so a bad one stops the run before it starts."""
    return [read_schema_file(path) for path in list_schema_files(folder, limit)]


# --- measuring --------------------------------------------------------------------------------


def serialize(data: Any) -> str:
    """The instance as MaskBench's Python runner writes it: one line, ", " and ": ", UTF-8 kept."""
    return json.dumps(data, ensure_ascii=False)


def compile_matcher(schema: Any, tokenizer: llguidance.LLTokenizer) -> tuple[llguidance.LLMatcher | None, float, str | None]:
    """(matcher, seconds to build the grammar and the matcher, error): the matcher's own error,
    or json_schema()'s for a schema it refuses before llguidance sees it."""
    start = time.perf_counter()
    try:
        grammar = json_schema(schema, **MASKBENCH_OPTIONS)
    except GrammarError as error:
        return None, time.perf_counter() - start, str(error)
    matcher = llguidance.LLMatcher(tokenizer, grammar.llguidance, log_level=0)
    seconds = time.perf_counter() - start
    if matcher.is_error():
        return None, seconds, first_line(matcher.get_error())
    return matcher, seconds, None


def force(matcher: llguidance.LLMatcher, token_ids: list[int], tokenizer: llguidance.LLTokenizer,
          bitmask: np.ndarray, mask_us: list[float]) -> tuple[bool, str | None]:
    """Force `token_ids` through `matcher` (advanced in place); append each mask's time to
    `mask_us`. (accepted, why not): accepted = every token allowed and the matcher accepting."""
    for position, token in enumerate(token_ids):
        start = time.perf_counter_ns()
        fill_next_token_bitmask(matcher, bitmask, 0)
        mask_us.append((time.perf_counter_ns() - start) / 1000)
        if matcher.is_error():
            return False, f"matcher error at token {position}: {first_line(matcher.get_error())}"
        allowed = (int(bitmask[0, token // 32]) >> (token % 32)) & 1
        if not allowed:
            before = tokenizer.decode_str(token_ids[max(0, position - 6):position])
            return False, (f"token {position} of {len(token_ids)} {tokenizer.dbg_tokens([token])} refused "
                           f"after {before!r}")
        if not matcher.consume_token(token):
            return False, f"matcher error at token {position}: {first_line(matcher.get_error())}"
    if not matcher.is_accepting():
        return False, f"all {len(token_ids)} tokens allowed, but the matcher does not accept at the end"
    return True, None


def run_file(schema_file: SchemaFile, tokenizer: llguidance.LLTokenizer, bitmask: np.ndarray | None = None) -> FileResult:
    """Compile the schema once, then force every instance through a fresh copy of the matcher."""
    bitmask = new_bitmask(tokenizer) if bitmask is None else bitmask
    matcher, seconds, error = compile_matcher(schema_file.schema, tokenizer)
    result = FileResult(schema_file.name, schema_file.subset, compiled=matcher is not None, error=error,
                        compile_ms=seconds * 1000 if matcher is not None else None)
    if matcher is None:
        return result
    for index, instance in enumerate(schema_file.instances):
        token_ids = tokenizer.tokenize_str(serialize(instance.data))
        accepted, reason = force(matcher.deep_copy(), token_ids, tokenizer, bitmask, result.mask_us)
        result.instances.append(InstanceResult(index, instance.valid, accepted, len(token_ids), reason))
    return result


def new_bitmask(tokenizer: llguidance.LLTokenizer) -> np.ndarray:
    return allocate_token_bitmask(1, tokenizer.vocab_size)


def run_benchmark(files: Iterable[SchemaFile], tokenizer: llguidance.LLTokenizer,
                  on_progress: Callable[[FileResult], None] | None = None) -> list[FileResult]:
    bitmask = new_bitmask(tokenizer)
    results = []
    for schema_file in files:
        result = run_file(schema_file, tokenizer, bitmask)
        results.append(result)
        if on_progress is not None:
            on_progress(result)
    return results


# --- GENERATION: the part another engineer fills in --------------------------------------------


# --- the expected-failures list ---------------------------------------------------------------


def shipped_expected_failures() -> Path:
    """The list shipped with the package: valid instances llguidance is known to refuse."""
    return Path(str(resources.files("decodekit.bench") / "data" / EXPECTED_FAILURES))


def read_expected_failures(path: Path | None = None) -> set[str]:
    """`FILE#INDEX` entries, one a line; blank lines and lines starting with # are skipped."""
    path = shipped_expected_failures() if path is None else Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DecodekitError(f"cannot read the expected-failures file {path}: {error.strerror}") from error
    entries = set()
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if not _INSTANCE_ID.match(entry):
            raise DecodekitError(f"{path}:{number}: expected FILE.json#INDEX (e.g. Github_easy---o10008.json#2), "
                                 f"got {entry!r}")
        entries.add(entry)
    return entries


def format_expected_failures(ids: Iterable[str], source: str) -> str:
    header = [
        "# Valid MaskBench instances that llguidance refuses when forced token by token",
        "# (decodekit bench-structured; FILE#INDEX, INDEX the 0-based place in the file's \"tests\").",
        f"# Generated from: {source}",
        "# A run fails on a refused valid instance missing here; one listed here that passes is",
        "# reported as fixed: remove it from the list.",
    ]
    return "\n".join(header + sorted(ids)) + "\n"


def rejected_valid(results: Iterable[FileResult]) -> list[str]:
    return sorted(instance_id(r.name, i.index) for r in results for i in r.valid_rejected)


def accepted_invalid(results: Iterable[FileResult]) -> list[str]:
    return sorted(instance_id(r.name, i.index) for r in results for i in r.invalid_accepted)


@dataclass
class Comparison:
    """This run against the expected-failures list, over the files that ran."""

    new_failures: list[str]  # valid instances refused that the list does not name
    fixed: list[str]  # listed, forced this run, and accepted: remove them from the list
    untested: list[str]  # listed for a file that ran, but not forced (schema did not compile, no such instance)
    invalid_accepted: list[str]  # must stay empty: a grammar that lets invalid output through

    @property
    def failed(self) -> bool:
        return bool(self.new_failures or self.invalid_accepted)


def compare(results: list[FileResult], expected: set[str]) -> Comparison:
    refused = set(rejected_valid(results))
    forced = {instance_id(r.name, i.index) for r in results for i in r.instances}
    ran = {r.name for r in results}
    listed = {entry for entry in expected if entry.rpartition("#")[0] in ran}
    return Comparison(new_failures=sorted(refused - listed), fixed=sorted((listed & forced) - refused),
                      untested=sorted(listed - forced), invalid_accepted=accepted_invalid(results))
