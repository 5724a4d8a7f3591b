"""What the user asks the output to match, turned into an llguidance grammar and checked.

Four kinds: a JSON Schema (`response_format` in OpenAI's shape, or `json_schema()`), a regular
expression, a Lark grammar (llguidance's dialect) and a GBNF grammar (llama.cpp's format,
converted to Lark). `check` compiles one against a tokenizer before any generation
starts, so a bad schema or grammar is a DecodekitError naming the keyword or the line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import llguidance
from llguidance.gbnf_to_lark import GbnfToLarkError, gbnf_to_lark

from decodekit.errors import DecodekitError

GrammarKind = Literal["json_schema", "regex", "lark", "gbnf"]

# llguidance's JSON options decodekit exposes (JsonCompileOptions in llguidance's _lib.pyi).
JSON_OPTIONS = ("lenient", "coerce_one_of", "whitespace_flexible", "whitespace_pattern", "item_separator",
                "key_separator")
# What OpenAI's response_format {"type": "json_schema", "json_schema": {...}} holds ("strict" is
# always true here: the output is constrained to the schema).
OPENAI_JSON_SCHEMA_KEYS = ("name", "description", "schema", "strict")
# Compact JSON on one line, as json.dumps writes it: flexible whitespace lets a small model
# pad its output with newlines until max_new_tokens instead of writing the next value.
DEFAULT_JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class GrammarError(DecodekitError):
    """A schema, regex or grammar llguidance cannot compile, or one it does not support."""


@dataclass(frozen=True)
class Grammar:
    """A constraint as llguidance takes it, with what it came from (for messages and checks)."""

    kind: GrammarKind
    source: str  # the schema (as JSON), regex or grammar text as given
    llguidance: str  # the grammar string LLMatcher takes
    schema: Any = field(default=None, compare=False)  # the JSON Schema, to validate outputs with


def json_schema(schema: Any, **options: Any) -> Grammar:
    """A JSON Schema (dict, bool, or its JSON text). Options: lenient (ignore keywords llguidance
    does not implement instead of refusing the schema), coerce_one_of (treat oneOf as anyOf),
    whitespace_flexible, whitespace_pattern, item_separator, key_separator."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as e:
            raise GrammarError(f"the JSON schema is not valid JSON: {e}") from None
    if not isinstance(schema, (dict, bool)):
        raise GrammarError(f"a JSON schema must be an object or a boolean, got {type(schema).__name__}")
    if schema is False:
        raise GrammarError("the JSON schema `false` matches nothing: there is no output to generate")
    given = schema
    if schema is True:
        schema = {}  # any JSON value; llguidance takes options only on an object schema
    unknown = sorted(set(options) - set(JSON_OPTIONS))
    if unknown:
        raise GrammarError(f"unknown JSON schema option(s) {', '.join(map(repr, unknown))}: "
                           f"the options are {', '.join(JSON_OPTIONS)}")
    overrides = {**DEFAULT_JSON_OPTIONS, **options}
    if options.get("whitespace_flexible"):
        overrides.pop("item_separator")
        overrides.pop("key_separator")
    try:
        text = llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=overrides)  # type: ignore[arg-type]
    except ValueError as e:
        raise GrammarError(f"invalid JSON schema: {e}") from None
    return Grammar("json_schema", json.dumps(given), text, given)


def regex(pattern: str) -> Grammar:
    if not isinstance(pattern, str) or not pattern:
        raise GrammarError(f"regex must be a non-empty string, got {pattern!r}")
    return Grammar("regex", pattern, llguidance.LLMatcher.grammar_from_regex(pattern))


def lark(text: str) -> Grammar:
    """A grammar in llguidance's Lark dialect (https://github.com/guidance-ai/llguidance, docs/syntax.md)."""
    if not isinstance(text, str) or not text.strip():
        raise GrammarError(f"grammar must be non-empty text, got {text!r}")
    return Grammar("lark", text, llguidance.LLMatcher.grammar_from_lark(text))


def gbnf(text: str) -> Grammar:
    """A grammar in llama.cpp's GBNF, converted to Lark."""
    if not isinstance(text, str) or not text.strip():
        raise GrammarError(f"grammar must be non-empty text, got {text!r}")
    try:
        converted = gbnf_to_lark(text)
    except GbnfToLarkError as e:
        raise GrammarError(f"invalid GBNF grammar: {e}") from None
    return Grammar("gbnf", text, llguidance.LLMatcher.grammar_from_lark(converted))


def grammar_text(text: str) -> Grammar:
    """A grammar of either syntax: GBNF defines rules with `::=`, Lark with `:`."""
    return gbnf(text) if "::=" in text else lark(text)


def from_response_format(response_format: Any) -> Grammar | None:
    """OpenAI's response_format: {"type": "json_schema", "json_schema": {"schema": {...}, ...}},
    {"type": "json_object"} (any JSON object) or {"type": "text"} (no constraint). decodekit
    also reads the JSON options (lenient, coerce_one_of, ...) from the "json_schema" object."""
    if not isinstance(response_format, dict) or "type" not in response_format:
        raise GrammarError('response_format must be a dict such as {"type": "json_schema", "json_schema": '
                           f'{{"name": "...", "schema": {{...}}}}}}, got {response_format!r}')
    kind = response_format["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return json_schema({"type": "object"})
    if kind != "json_schema":
        raise GrammarError(f"response_format type must be 'json_schema', 'json_object' or 'text', got {kind!r}")
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or "schema" not in spec:
        raise GrammarError('response_format {"type": "json_schema"} needs "json_schema": {"name": "...", "schema": {...}}')
    unknown = sorted(set(spec) - set(OPENAI_JSON_SCHEMA_KEYS) - set(JSON_OPTIONS))
    if unknown:
        raise GrammarError(f"unknown key(s) {', '.join(map(repr, unknown))} in response_format's json_schema: it takes "
                           f"{', '.join(OPENAI_JSON_SCHEMA_KEYS)} and decodekit's options {', '.join(JSON_OPTIONS)}")
    options = {k: v for k, v in spec.items() if k in JSON_OPTIONS}
    return json_schema(spec["schema"], **options)


def from_options(response_format: Any = None, regex_pattern: Any = None, grammar: Any = None) -> Grammar | None:
    """The one constraint a generate() call asks for, if any (asking for two is an error)."""
    given = [name for name, value in (("response_format", response_format), ("regex", regex_pattern),
                                      ("grammar", grammar)) if value is not None]
    if len(given) > 1:
        raise GrammarError(f"pass at most one of response_format=, regex= and grammar=, got {' and '.join(given)}")
    if response_format is not None:
        return from_response_format(response_format)
    if regex_pattern is not None:
        return regex(regex_pattern)
    if grammar is not None:
        if isinstance(grammar, Grammar):
            return grammar
        if not isinstance(grammar, str):
            raise GrammarError(f"grammar must be Lark or GBNF text, got {type(grammar).__name__}")
        return grammar_text(grammar)
    return None


def check(grammar: Grammar, tokenizer: llguidance.LLTokenizer | None = None) -> None:
    """Compile `grammar` once; raise a GrammarError naming the keyword or line it trips on."""
    failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar.llguidance, tokenizer)
    if failed:
        raise compile_error(grammar, messages[0])


def first_line(message: str) -> str:
    """llguidance's errors go on with the parser's state and the grammar text: keep the message."""
    return message.strip().splitlines()[0].strip() if message.strip() else "unknown error"


def compile_error(grammar: Grammar, message: str) -> GrammarError:
    """llguidance's message on one line: its first line names the keyword, or the line and
    column ("at 2(6): unknown name ..."); the rest mostly repeats the grammar text."""
    # A regex parse error says what is wrong on a later "error: ..." line.
    detail = next((line.strip() for line in message.strip().splitlines()[1:] if line.strip().startswith("error:")), "")
    return GrammarError(f"invalid or unsupported {grammar.kind.replace('_', ' ')}: {first_line(message)} {detail}".strip())
