"""What a request may ask of the server: the operator decides, a request chooses within it.

A request picks a method and its numeric options. It can never make the server load a model or
read a file: the draft and amateur models are the ones the operator started the server with,
and the options that would load or read something else are the operator's alone. Nothing a
request asks for grows without a bound: beams, drafts, tree sizes, candidate tables, stop
strings and choices all have limits, with defaults here and flags on `decodekit serve`.
"""

from __future__ import annotations

from dataclasses import dataclass

from decodekit.methods import MethodSpec, parse_method, spec_text
from decodekit.server.protocol import ApiError, OptionValue

# Options that load a model or read a file: a request may only repeat the operator's value.
OPERATOR_OPTIONS = ("draft", "amateur", "draft_dtype", "predictor")

# Which limit bounds each integer option (the methods' constructors name them).
BOUNDED_BY = {
    "num_beams": "beams", "num_beam_groups": "beams", "num_return_sequences": "beams",
    "num_drafts": "drafts", "width": "drafts", "branch": "drafts",
    "max_nodes": "tree_nodes", "max_draft": "tree_nodes", "first_draft": "tree_nodes", "depth": "tree_nodes",
    "window": "tree_nodes", "guesses": "tree_nodes", "ngram": "tree_nodes", "min_ngram": "tree_nodes",
    "max_ngram": "tree_nodes", "gamma": "tree_nodes", "tokens_per_step": "tree_nodes",
    "k": "k", "top_k": "k", "branching": "k",
}
FIXED_BOUNDS = {"pool_size": 65_536}  # lookahead's n-gram pool: memory, not a knob to open up
ANY_INTEGER = 1_024  # any other integer option (layer indices, exit layers, ...)


@dataclass(frozen=True)
class ServerLimits:
    """The operator's choices: how long an answer may be, how big a method's work may grow, and
    which second models exist (`--draft`, `--amateur`)."""

    max_tokens: int  # the most tokens one request may ask for (--max-tokens-limit)
    default_max_tokens: int  # what a request that names no max_tokens gets
    beams: int = 8  # num_beams, num_beam_groups, num_return_sequences (--max-beams)
    drafts: int = 8  # num_drafts, and a draft tree's width or branching by a draft model (--max-drafts)
    tree_nodes: int = 128  # tokens one step may draft or guess: max_draft, max_nodes, window, depth, ...
    k: int = 32  # candidates kept per token or step: token recycling's k (a vocab x k table), top_k
    stop_strings: int = 4  # as OpenAI's API (--max-stop-strings)
    stop_length: int = 64  # characters in one stop string: each is searched for at every step
    n: int = 16  # choices per request
    draft: str | None = None  # the draft model requests may use (--draft)
    amateur: str | None = None  # the amateur model requests may use (--amateur)

    def bound(self, option: str) -> tuple[int, str]:
        """The largest value `option` may take, and the flag (or reason) that sets it."""
        if option in BOUNDED_BY:
            name = BOUNDED_BY[option]
            return getattr(self, name), f"--max-{name.replace('_', '-')}"
        if option in FIXED_BOUNDS:
            return FIXED_BOUNDS[option], "a fixed bound"
        return ANY_INTEGER, "the bound on any integer option"

    def operator_value(self, option: str) -> str | None:
        return {"draft": self.draft, "amateur": self.amateur}.get(option)

    def check_options(self, options: dict[str, OptionValue], where: str) -> dict[str, OptionValue]:
        """`options` of a request's method (or drafter), checked; the operator's models filled in."""
        for name, value in options.items():
            if name in OPERATOR_OPTIONS:
                allowed = self.operator_value(name)
                if value != allowed:
                    told = f"this server was started with '{allowed}'" if allowed else "this server has none"
                    raise ApiError(400, f"{name} names a model or file, which the server's operator chooses: "
                                        f"{told}; leave {name} out", f"{where}.{name}")
            elif isinstance(value, int) and not isinstance(value, bool):
                most, source = self.bound(name)
                if value > most:
                    raise ApiError(400, f"{name} is {value}, over this server's limit of {most} ({source})",
                                   f"{where}.{name}")
        return options

    def check_stop(self, stop: list[str]) -> None:
        if len(stop) > self.stop_strings:
            raise ApiError(400, f"stop holds {len(stop)} strings, over this server's limit of {self.stop_strings} "
                                "(--max-stop-strings)", "stop")
        for text in stop:
            if len(text) > self.stop_length:
                raise ApiError(400, f"a stop string is {len(text)} characters, over this server's limit of "
                                    f"{self.stop_length} (--max-stop-length)", "stop")

    def with_models(self, method: str, options: dict[str, OptionValue]) -> dict[str, OptionValue]:
        """The operator's draft or amateur model added where `method` takes one."""
        from decodekit.drafters import fill_draft  # here: the CLI reads this module's defaults
        from decodekit.strategies import takes_amateur

        added = fill_draft(method, dict(options), self.draft)
        if self.amateur and takes_amateur(method) and "amateur" not in added:
            added["amateur"] = self.amateur
        return added

    def requested(self, method: str, options: dict[str, OptionValue], drafter: str | None
                  ) -> tuple[str, dict[str, OptionValue], str | None]:
        """A request's method (options in brackets or apart) and drafter, bounded and with the
        operator's models: what DecodingChoice.parse then checks against the methods."""
        spec = parse_method(method)
        merged = self.with_models(spec.name, self.check_options({**spec.options, **options}, "decoding.options"))
        if drafter is not None:
            part = parse_method(drafter)
            bounded = self.with_models(part.name, self.check_options(dict(part.options), "decoding.drafter"))
            drafter = spec_text(MethodSpec(part.name, part.name, bounded))
        return spec.name, merged, drafter
