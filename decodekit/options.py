"""Checking a method's keyword options against its constructor, before anything loads."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import TypeVar

from decodekit.errors import DecodekitError


def check_option_types(method: str, options: dict, factory: Callable) -> None:
    """Names against the drafter's parameters, values against the type of their defaults: a
    typo or a string where a number belongs is named here, not as a TypeError from inside."""
    parameters = inspect.signature(factory).parameters
    for name, value in options.items():
        if name not in parameters:
            takes = f"it takes {', '.join(parameters)}" if parameters else "it takes no options"
            raise DecodekitError(f"bad option for method '{method}': it has no option '{name}' ({takes})")
        default = parameters[name].default
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            kind = "a finite number"
        elif isinstance(default, str):
            ok, kind = isinstance(value, str), "a string"
        else:
            continue
        if not ok:
            raise DecodekitError(f"bad option for method '{method}': {name} must be {kind}, got {value!r}")


T = TypeVar("T")


def build_named(kind: str, registry: Mapping[str, Callable[..., T]], name: str, options: dict) -> T:
    """registry[name](**options), with an unknown name, option or option type named as the
    user's mistake (`kind`: "strategy", "search method", ...) before anything loads."""
    if name not in registry:
        raise DecodekitError(f"unknown {kind} '{name}': choose one of {', '.join(registry)}")
    check_option_types(name, options, registry[name])
    try:
        return registry[name](**options)
    except TypeError as error:
        raise DecodekitError(f"bad option for method '{name}': {error}") from error
