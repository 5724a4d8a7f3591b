"""Drafters by method name. The loop never sees these names: it only sees a Drafter."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from decodekit.drafters.aded import AdedDrafter
from decodekit.drafters.base import Drafter, NoDrafter
from decodekit.drafters.composite import CompositeDrafter
from decodekit.drafters.copy_spec import CopySpecDrafter
from decodekit.drafters.draft_model import DraftModelDrafter
from decodekit.drafters.lookahead import LookaheadDrafter
from decodekit.drafters.multi_draft import RsdDrafter, SpecTrDrafter
from decodekit.drafters.pearl import PearlDrafter
from decodekit.drafters.prompt_lookup import PromptLookupDrafter
from decodekit.drafters.self_spec import LayerSkipMethod, SelfSpecDrafter
from decodekit.drafters.token_recycling import TokenRecyclingDrafter
from decodekit.errors import DecodekitError
from decodekit.options import check_option_types

METHODS: dict[str, Callable[..., Drafter]] = {
    "ar": NoDrafter,
    "prompt-lookup": PromptLookupDrafter,
    "token-recycling": TokenRecyclingDrafter,
    "copy-spec": CopySpecDrafter,
    "lookahead": LookaheadDrafter,
    "aded": AdedDrafter,
    "draft-model": DraftModelDrafter,
    "spectr": SpecTrDrafter,
    "rsd": RsdDrafter,
    "self-spec": SelfSpecDrafter,
    "pearl": PearlDrafter,
}

# Lossy methods: they change the model that decodes (its output is no longer the model's own),
# so they are not drafters. The benchmark reports what they lose.
LOSSY: dict[str, Callable[..., LayerSkipMethod]] = {
    "layer-skip": LayerSkipMethod,
}


def check_method(method: str, options: dict | None = None, allow_auto: bool = True) -> None:
    """Reject an unknown method name or a bad option early, before any model is loaded."""
    if allow_auto and method == "auto":
        if options:
            raise DecodekitError("method 'auto' takes no method options: it picks the method and its options")
        return
    _check_name(method, allow_auto)
    if method in LOSSY:
        make_lossy(method, **(options or {}))
        return
    make_drafter(method, **(options or {}))  # the drafters check their option values


def make_lossy(method: str, **options) -> LayerSkipMethod:
    check_option_types(method, options, LOSSY[method])
    try:
        return LOSSY[method](**options)
    except TypeError as error:
        raise DecodekitError(f"bad option for method '{method}': {error}") from error


def make_drafter(method: str, **options) -> Drafter:
    """A drafter by name; 'a+b' merges the drafts of a and b into one tree each step."""
    _check_name(method, allow_auto=False)
    if method in LOSSY:
        raise DecodekitError(f"'{method}' is a lossy method, not a drafter: use it through Decoder")
    if "+" in method:
        if options:
            raise DecodekitError(f"options are not supported for composite methods such as '{method}'; "
                                 "build a CompositeDrafter instead")
        return CompositeDrafter([make_drafter(part) for part in method.split("+")])
    check_option_types(method, options, METHODS[method])
    try:
        return METHODS[method](**options)
    except TypeError as error:
        raise DecodekitError(f"bad option for method '{method}': {error}") from error


def takes_draft(method: str) -> bool:
    """Does this method draft with a second model (and so take the `draft` option)?"""
    return method in METHODS and "draft" in inspect.signature(METHODS[method]).parameters


def fill_draft(method: str, options: dict, draft: str | None) -> dict:
    """Options with the command line's --draft added where the method takes a draft model and
    its options do not name one already."""
    if draft and takes_draft(method) and "draft" not in options:
        return {**options, "draft": draft}
    return options


def _check_name(method: object, allow_auto: bool) -> None:
    if not isinstance(method, str):
        raise DecodekitError(f"method must be a string such as 'prompt-lookup', got {method!r}")
    if method in LOSSY:
        return
    unknown = [part for part in method.split("+") if part not in METHODS]
    if unknown:
        choices = ", ".join([*METHODS, *LOSSY, "a+b (composite)"] + (["auto"] if allow_auto else []))
        which = f"'{unknown[0]}' in '{method}'" if "+" in method else f"'{method}'"
        raise DecodekitError(f"unknown method {which}: choose one of {choices}")


__all__ = [
    "LOSSY", "METHODS", "AdedDrafter", "CompositeDrafter", "CopySpecDrafter", "DraftModelDrafter", "Drafter", "LookaheadDrafter",
    "NoDrafter", "PearlDrafter", "PromptLookupDrafter", "RsdDrafter", "SelfSpecDrafter", "SpecTrDrafter", "TokenRecyclingDrafter",
    "check_method", "fill_draft", "make_drafter", "make_lossy", "takes_draft",
]
