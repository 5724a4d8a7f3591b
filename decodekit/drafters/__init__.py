"""Drafters by method name. The loop never sees these names: it only sees a Drafter."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

from decodekit.drafters.aded import AdedDrafter
from decodekit.drafters.base import Drafter, NoDrafter
from decodekit.drafters.composite import CompositeDrafter
from decodekit.drafters.copy_spec import CopySpecDrafter
from decodekit.drafters.lookahead import LookaheadDrafter
from decodekit.drafters.prompt_lookup import PromptLookupDrafter
from decodekit.drafters.token_recycling import TokenRecyclingDrafter
from decodekit.errors import DecodekitError

METHODS: dict[str, Callable[..., Drafter]] = {
    "ar": NoDrafter,
    "prompt-lookup": PromptLookupDrafter,
    "token-recycling": TokenRecyclingDrafter,
    "copy-spec": CopySpecDrafter,
    "lookahead": LookaheadDrafter,
    "aded": AdedDrafter,
}


def check_method(method: str, options: dict | None = None, allow_auto: bool = True) -> None:
    """Reject an unknown method name or a bad option early, before any model is loaded."""
    if allow_auto and method == "auto":
        if options:
            raise DecodekitError("method 'auto' takes no method options: it picks the method and its options")
        return
    _check_name(method, allow_auto)
    make_drafter(method, **(options or {}))  # the drafters check their option values


def make_drafter(method: str, **options) -> Drafter:
    """A drafter by name; 'a+b' merges the drafts of a and b into one tree each step."""
    _check_name(method, allow_auto=False)
    if "+" in method:
        if options:
            raise DecodekitError(f"options are not supported for composite methods such as '{method}'; "
                                 "build a CompositeDrafter instead")
        return CompositeDrafter([make_drafter(part) for part in method.split("+")])
    _check_option_types(method, options)
    try:
        return METHODS[method](**options)
    except TypeError as error:
        raise DecodekitError(f"bad option for method '{method}': {error}") from error


def _check_name(method: object, allow_auto: bool) -> None:
    if not isinstance(method, str):
        raise DecodekitError(f"method must be a string such as 'prompt-lookup', got {method!r}")
    unknown = [part for part in method.split("+") if part not in METHODS]
    if unknown:
        choices = ", ".join([*METHODS, "a+b (composite)"] + (["auto"] if allow_auto else []))
        which = f"'{unknown[0]}' in '{method}'" if "+" in method else f"'{method}'"
        raise DecodekitError(f"unknown method {which}: choose one of {choices}")


def _check_option_types(method: str, options: dict) -> None:
    """Names against the drafter's parameters, values against the type of their defaults: a
    typo or a string where a number belongs is named here, not as a TypeError from inside."""
    parameters = inspect.signature(METHODS[method]).parameters
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


__all__ = [
    "METHODS", "AdedDrafter", "CompositeDrafter", "CopySpecDrafter", "Drafter", "LookaheadDrafter", "NoDrafter",
    "PromptLookupDrafter", "TokenRecyclingDrafter", "check_method", "make_drafter",
]
