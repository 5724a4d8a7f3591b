"""Drafters by method name. The loop never sees these names: it only sees a Drafter."""

from __future__ import annotations

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


def check_method(method: str, allow_auto: bool = True) -> None:
    """Reject an unknown method name early, before any model is loaded."""
    if allow_auto and method == "auto":
        return
    unknown = [part for part in method.split("+") if part not in METHODS]
    if unknown or not method:
        choices = ", ".join([*METHODS, "a+b (composite)"] + (["auto"] if allow_auto else []))
        raise DecodekitError(f"unknown method '{method}': choose one of {choices}")


def make_drafter(method: str, **options) -> Drafter:
    """A drafter by name; 'a+b' merges the drafts of a and b into one tree each step."""
    if "+" in method:
        if options:
            raise DecodekitError("options are not supported for composite methods; build a CompositeDrafter instead")
        return CompositeDrafter([make_drafter(part) for part in method.split("+")])
    if method not in METHODS:
        raise DecodekitError(f"unknown method '{method}': choose one of {', '.join(METHODS)}")
    try:
        return METHODS[method](**options)
    except TypeError as error:
        raise DecodekitError(f"bad option for method '{method}': {error}") from error


__all__ = ["Drafter", "NoDrafter", "PromptLookupDrafter", "TokenRecyclingDrafter", "CopySpecDrafter", "CompositeDrafter", "LookaheadDrafter", "AdedDrafter", "METHODS", "check_method", "make_drafter"]
