"""A GGUF's chat template (Jinja, as stored in its `tokenizer.chat_template` key), rendered the
way transformers renders the same template: a sandboxed environment with blocks trimmed, and
the helpers templates call (`raise_exception`, `strftime_now`, `tojson`).
"""

from __future__ import annotations

import datetime
import functools
import json

from decodekit.errors import DecodekitError


def render(template: str, messages: list[dict], bos_token: str, eos_token: str) -> str:
    """The conversation as text, ending where the assistant's answer starts."""
    try:
        return _compiled(template).render(messages=messages, add_generation_prompt=True,
                                          bos_token=bos_token, eos_token=eos_token)
    except TemplateRaised as error:
        raise DecodekitError(f"the model's chat template refused the messages: {error}") from None


class TemplateRaised(Exception):
    """A template's own `raise_exception(...)`: messages it does not accept."""


@functools.lru_cache(maxsize=8)
def _compiled(template: str):
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env.from_string(template)


def _raise(message: str):
    raise TemplateRaised(message)


def _tojson(value, ensure_ascii: bool = False, indent=None, separators=None, sort_keys: bool = False) -> str:
    # transformers' templates expect non-ASCII kept as is (Jinja's built-in tojson escapes it).
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
