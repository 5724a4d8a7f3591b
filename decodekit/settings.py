"""The settings of one generation call, typed end to end.

`GenerateOptions` types the keyword arguments of `generate()` / `stream()` for type checkers;
`GenerationSettings.from_options` checks them at run time (a typo such as `temprature=` or a
float `top_k` is a clear DecodekitError, not a TypeError from deep inside) and carries them on
as one frozen value: the loop gets a SamplingConfig, the text side gets the stop strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict, TypeGuard

from decodekit.errors import DecodekitError
from decodekit.grammar import Grammar, from_options
from decodekit.sampling import SamplingConfig


class GenerateOptions(TypedDict, total=False):
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    epsilon_cutoff: float
    eta_cutoff: float
    seed: int | None
    stop: list[str] | None
    response_format: dict | None
    regex: str | None
    grammar: str | Grammar | None
    heal: bool


DEFAULT_MAX_NEW_TOKENS = 256
SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff")


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    seed: int | None = None  # None: a fresh random seed per call
    stop: tuple[str, ...] = ()
    grammar: Grammar | None = None  # the constraint on the output, if any (grammar.py)
    heal: bool = False  # token healing at the prompt's end (constraints/healing.py)

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> GenerationSettings:
        unknown = sorted(set(options) - set(GenerateOptions.__annotations__))
        if unknown:
            known = ", ".join(GenerateOptions.__annotations__)
            raise DecodekitError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
                                 f"generation takes {known}")
        max_new_tokens = options.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        if not is_int(max_new_tokens) or max_new_tokens < 1:
            raise DecodekitError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        seed = options.get("seed")
        if seed is not None and (not is_int(seed) or seed < 0):
            raise DecodekitError(f"seed must be an integer >= 0, got {seed!r}")
        stop = options.get("stop")
        stop = [] if stop is None else stop  # "" or 0 is a mistake to report, not "no stop strings"
        if isinstance(stop, str) or not isinstance(stop, (list, tuple)):
            raise DecodekitError(f"stop must be a list of strings, got {stop!r}")
        if not all(isinstance(s, str) and s for s in stop):
            raise DecodekitError(f"stop strings must be non-empty strings, got {list(stop)!r}")
        grammar = from_options(options.get("response_format"), options.get("regex"), options.get("grammar"))
        heal = options.get("heal", False)
        if not isinstance(heal, bool):
            raise DecodekitError(f"heal must be True or False, got {heal!r}")
        sampling = SamplingConfig(**{k: options[k] for k in SAMPLING_FIELDS if k in options})  # type: ignore[arg-type]
        return cls(max_new_tokens=max_new_tokens, sampling=sampling, seed=seed, stop=tuple(stop),
                   grammar=grammar, heal=heal)


def is_int(value: object) -> TypeGuard[int]:
    """An integer, but not a bool (True is an int in Python, never a sensible count)."""
    return isinstance(value, int) and not isinstance(value, bool)

