"""`decodekit bench-structured --generate N`: generate with a model under N MaskBench schemas and
check what comes out, and what the constraint costs in speed.

- **Validity.** For each schema, greedy and at temperature 1.0 (seeded), the output is parsed
  and validated with the `jsonschema` package. An output cut by max_new_tokens is counted as
  truncated, never as valid; one that completed the grammar but does not parse or validate is
  a failure of the constraint (the benchmark expects none).
- **Speed.** For the first `speed` schemas the greedy prompt is also decoded without the
  constraint; tokens/s with and without are compared over the same prompts, overall and on the
  schemas where fast-forward supplied a large share of the tokens (long fixed keys). The rate
  leaves out the first step (the prefill of a prompt that holds the whole schema), which would
  otherwise weigh on the shorter of the two outputs.

Schemas are taken round-robin over the subsets (by file name within a subset), skipping those
that do not compile, those over MAX_SCHEMA_CHARS, and those whose prompt would not leave room
for the output in the model's context.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import jsonschema
import referencing.exceptions

from decodekit.api import Decoder
from decodekit.bench.divergence import first_divergence, is_bug, logit_gap, tie_tolerance
from decodekit.bench.report import markdown_table
from decodekit.errors import DecodekitError
from decodekit.types import Draft, GenerationStats

MODES = {"greedy": {"temperature": 0.0}, "t=1.0": {"temperature": 1.0, "seed": 0}}
PROMPT = "Write one JSON value that satisfies this JSON Schema. Reply with the JSON only.\n\nSchema:\n{schema}"
MAX_SCHEMA_CHARS = 6000  # a longer schema makes a prompt the small default model cannot use
FAST_FORWARD_SHARE = 0.3  # "fast-forward applies": at least this share of the tokens was forced

Verdict = Literal["valid", "invalid", "unparsable", "truncated", "unchecked"]


@dataclass
class Generated:
    file: str
    subset: str
    mode: str
    tokens: int
    forced: int
    seconds: float
    stop_reason: str | None
    completed: bool | None
    verdict: Verdict
    detail: str = ""  # why it is not valid
    # Tokens and seconds after the first step (the prefill), with and without the constraint;
    # the unconstrained pair is measured for greedy on the first `speed` schemas only.
    decode_tokens: int = 0
    decode_seconds: float = 0.0
    unconstrained_tokens: int = 0
    unconstrained_seconds: float = 0.0
    # Greedy with each drafting method (the first `speed` schemas): {method: {"identical": ids
    # equal to AR's, "explained": a divergence at an fp tie, "tokens", "seconds"}}.
    methods: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def candidates(files: list[Any], compiled: set[str]) -> list[Any]:
    """The compiled schemas, round-robin over the subsets."""
    by_subset: dict[str, list[Any]] = {}
    for f in sorted(files, key=lambda f: f.name):
        if f.name in compiled and len(json.dumps(f.schema)) <= MAX_SCHEMA_CHARS:
            by_subset.setdefault(f.subset, []).append(f)
    picked: list[Any] = []
    queues = [list(reversed(q)) for _, q in sorted(by_subset.items())]
    while any(queues):
        for queue in queues:
            if queue:
                picked.append(queue.pop())
    return picked


def verdict(text: str, schema: Any, completed: bool | None, stop_reason: str | None) -> tuple[Verdict, str]:
    if not completed:
        return "truncated", f"stopped by {stop_reason} before the grammar completed"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return "unparsable", str(error)
    try:
        validator = jsonschema.validators.validator_for(schema)
        validator(schema).validate(value)
    except jsonschema.ValidationError as error:
        return "invalid", error.message[:300]
    except (jsonschema.SchemaError, referencing.exceptions.Unresolvable) as error:
        # The jsonschema package cannot check this schema (a remote $ref, a malformed keyword).
        return "unchecked", f"{type(error).__name__}: {str(error)[:200]}"
    return "valid", ""


def generate_all(decoder: Decoder, files: list[Any], count: int, max_new_tokens: int, speed: int,
                 on_progress: Callable[[Generated], None] = lambda g: None,
                 drafters: dict[str, Decoder] | None = None) -> list[Generated]:
    """Both modes for the first `count` files of `files` whose prompt leaves room for the output;
    `drafters` (label -> Decoder on the same backend) decode the greedy case too, on the first `speed`."""
    results: list[Generated] = []
    for f in files:
        if len(results) == 2 * count:
            break
        try:
            ids = decoder.user_prompt_ids(PROMPT.format(schema=json.dumps(f.schema)))
        except DecodekitError:
            continue  # a prompt the model's context cannot hold
        if len(ids) + max_new_tokens > decoder.backend.context_length:
            continue
        measure_speed = len(results) < 2 * speed
        response_format = {"type": "json_schema", "json_schema": {"name": "maskbench", "schema": f.schema}}
        for mode, options in MODES.items():
            run = _decode(decoder, ids, response_format=response_format, max_new_tokens=max_new_tokens, **options)
            judged, detail = verdict(run.text, f.schema, run.stats.completed, run.stats.stop_reason)
            generated = Generated(f.name, f.subset, mode, run.stats.new_tokens, run.stats.forced_tokens, run.stats.wall_s,
                                  run.stats.stop_reason, run.stats.completed, judged, detail, *run.after_first)
            if mode == "greedy" and measure_speed:
                generated.unconstrained_tokens, generated.unconstrained_seconds = _decode(
                    decoder, ids, max_new_tokens=max_new_tokens).after_first
                for label, other in (drafters or {}).items():
                    again = _decode(other, ids, response_format=response_format, max_new_tokens=max_new_tokens)
                    generated.methods[label] = {
                        "identical": again.token_ids == run.token_ids,
                        "explained": _tie(decoder, ids, run.token_ids, again.token_ids),
                        "tokens": again.after_first[0], "seconds": again.after_first[1]}
            results.append(generated)
            on_progress(generated)
    return results


@dataclass
class _Run:
    text: str
    stats: GenerationStats
    token_ids: list[int]
    after_first: tuple[int, float]  # tokens and seconds after the first step (the prefill)


def _decode(decoder: Decoder, ids: list[int], **options: Any) -> _Run:
    stats, token_ids = GenerationStats(), list[int]()
    chunks = list(decoder.stream_chunks(prompt_ids=ids, stats=stats, token_ids=token_ids, **options))
    first = chunks[0].step if chunks else None
    first_s = first.draft_s + first.forward_s + first.other_s if first else 0.0
    after = (stats.new_tokens - len(first.tokens) if first else 0, max(stats.wall_s - first_s, 0.0))
    return _Run("".join(c.text for c in chunks), stats, token_ids, after)


def _tie(decoder: Decoder, ids: list[int], want: list[int], got: list[int]) -> bool | None:
    """Where `got` first leaves `want`: True if AR's logits there tie within the benchmark's
    tolerance (an explained divergence), False if not (a bug); None when they are identical."""
    position = first_divergence(want, got)
    if position is None:
        return None
    backend = decoder.backend
    row = backend.forward(ids + want[:position], Draft.empty(), backend.new_cache())[0]
    return not is_bug(logit_gap(row, want[position], got[position]), tie_tolerance(row, backend))


@dataclass
class SpeedSummary:
    schemas: int
    constrained_tok_s: float
    unconstrained_tok_s: float

    @property
    def ratio(self) -> float:
        return self.constrained_tok_s / self.unconstrained_tok_s if self.unconstrained_tok_s else 0.0


def speed_summary(results: list[Generated], fast_forward_only: bool = False) -> SpeedSummary:
    """Tokens/s with the constraint over tokens/s without it, on the same prompts."""
    pairs = [g for g in results if g.unconstrained_tokens]
    if fast_forward_only:
        pairs = [g for g in pairs if g.tokens and g.forced / g.tokens >= FAST_FORWARD_SHARE]
    return SpeedSummary(len(pairs), _rate(sum(g.decode_tokens for g in pairs), sum(g.decode_seconds for g in pairs)),
                        _rate(sum(g.unconstrained_tokens for g in pairs), sum(g.unconstrained_seconds for g in pairs)))


def counts(results: list[Generated]) -> dict[str, dict[str, int]]:
    """Verdicts per mode."""
    table: dict[str, dict[str, int]] = {}
    for g in results:
        row = table.setdefault(g.mode, {"valid": 0, "invalid": 0, "unparsable": 0, "truncated": 0, "unchecked": 0})
        row[g.verdict] += 1
    return table


def markdown(results: list[Generated], command: str) -> str:
    """The generation section of report.md."""
    verdicts = [[mode, str(sum(row.values())), *(str(row[v]) for v in ("valid", "truncated", "invalid", "unparsable",
                                                                         "unchecked"))]
                for mode, row in counts(results).items()]
    lines = ["## Generation under the schemas", "", f"`{command}`", "",
             markdown_table(["mode", "schemas", "valid", "truncated (max_new_tokens)", "invalid", "unparsable",
                             "not checkable by jsonschema"], verdicts), ""]
    speeds = [[label, str(s.schemas), f"{s.constrained_tok_s:.1f}", f"{s.unconstrained_tok_s:.1f}", f"{s.ratio:.2f}×"]
              for label, s in (("all", speed_summary(results)),
                               (f"≥ {FAST_FORWARD_SHARE:.0%} of tokens forced", speed_summary(results, True)))]
    lines += [markdown_table(["speed (greedy, same prompts)", "schemas", "constrained tok/s", "unconstrained tok/s",
                              "ratio"], speeds), ""]
    names = sorted({name for g in results for name in g.methods})
    if names:
        ar = [g for g in results if g.methods]
        ar_rate = _rate(sum(g.decode_tokens for g in ar), sum(g.decode_seconds for g in ar))
        rows = []
        for name in names:
            runs = [g.methods[name] for g in ar if name in g.methods]
            rate = _rate(sum(r["tokens"] for r in runs), sum(r["seconds"] for r in runs))
            rows.append([name, str(len(runs)), str(sum(r["identical"] for r in runs)),
                         str(sum(r["explained"] is True for r in runs)), str(sum(r["explained"] is False for r in runs)),
                         f"{rate:.1f}", f"{rate / ar_rate if ar_rate else 0:.2f}×"])
        lines += [markdown_table(["constrained greedy with a drafter", "schemas", "identical to constrained AR",
                                  "divergences at a tie", "divergences not at a tie", "tok/s", "vs constrained AR"],
                                 rows), ""]
    failures = [g for g in results if g.verdict in ("invalid", "unparsable")]
    if failures:
        lines += ["Outputs that completed the grammar but fail the schema:", ""]
        lines += [f"- {g.file} ({g.mode}): {g.verdict}: {g.detail}" for g in failures]
    return "\n".join(lines) + "\n"


def _rate(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else 0.0
