"""Method names with options, as written on a command line: `token-recycling[adaptive=false]`.

Listing one method twice with different options compares two configurations in one run, e.g.
`decodekit bench --methods "ar,token-recycling,token-recycling[adaptive=false]"`; the label as
written names the row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from decodekit.errors import DecodekitError

_SPEC = re.compile(r"^(?P<name>[^\[\]]+?)(?:\[(?P<options>[^\[\]]*)\])?$")


@dataclass(frozen=True)
class MethodSpec:
    label: str  # as written: names the method's rows and records
    name: str  # the registered method (or composite, or baseline)
    options: dict[str, Any] = field(default_factory=dict)  # bool, int, float or str values


def split_methods(text: str) -> list[str]:
    """Comma-separated entries, where commas inside [...] belong to an entry's options.

    >>> split_methods("ar, token-recycling[adaptive=false,k=4],aded")
    ['ar', 'token-recycling[adaptive=false,k=4]', 'aded']
    """
    entries, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            entries.append(current)
            current = ""
        else:
            current += char
    entries.append(current)
    return [entry.strip() for entry in entries if entry.strip()]


def parse_method(text: str) -> MethodSpec:
    """`name` or `name[key=value,...]`; values become bools, ints or floats where they read so.

    >>> parse_method("copy-spec[source=prompt,gamma=4]")
    MethodSpec(label='copy-spec[source=prompt,gamma=4]', name='copy-spec', options={'source': 'prompt', 'gamma': 4})
    """
    label = text.strip()
    match = _SPEC.match(label)
    if not match:
        raise DecodekitError(f"cannot read method '{text}': write name or name[key=value,...]")
    options: dict[str, Any] = {}
    for item in (match["options"] or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise DecodekitError(f"method '{label}': option '{item.strip()}' is not key=value")
        options[key.strip()] = _value(value.strip())
    return MethodSpec(label, match["name"].strip(), options)


def _value(text: str) -> bool | int | float | str:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def spec_text(spec: MethodSpec) -> str:
    """The spec as a method string, with the options filled in since it was written."""
    options = ",".join(f"{key}={value}" for key, value in spec.options.items())
    return f"{spec.name}[{options}]" if options else spec.name
