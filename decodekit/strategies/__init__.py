"""Strategies by method name: what each step's distribution becomes (strategies/base.py).

A strategy is a method of its own (`method="dola"`) and composes with any drafter
(`Decoder(..., method="dola", drafter="prompt-lookup")`): the drafter only makes it faster.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from decodekit.options import build_named
from decodekit.strategies.base import Strategy
from decodekit.strategies.contrastive import ContrastiveDecoding
from decodekit.strategies.dola import DoLa
from decodekit.strategies.lol import Lol
from decodekit.strategies.mirostat import Mirostat
from decodekit.strategies.uscd import Uscd

STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "mirostat": Mirostat,
    "contrastive-decoding": ContrastiveDecoding,
    "dola": DoLa,
    "lol": Lol,
    "uscd": Uscd,
}


def takes_amateur(name: str) -> bool:
    """Does this strategy contrast the model with a second, amateur model?"""
    return name in STRATEGIES and "amateur" in inspect.signature(STRATEGIES[name]).parameters


def make_strategy(name: str, **options) -> Strategy:
    """A strategy by name, its options checked (names and value types) before anything loads."""
    return build_named("strategy", STRATEGIES, name, options)


__all__ = ["STRATEGIES", "ContrastiveDecoding", "DoLa", "Lol", "Mirostat", "Strategy", "Uscd", "make_strategy"]
