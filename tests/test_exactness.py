"""Every registered method reproduces plain decoding on every tiny architecture, and really drafts.

One test for all drafters, so a method added to `decodekit.drafters.METHODS` is held to the same
bar without anyone writing a test for it: its greedy ids equal autoregressive decoding's and its
drafts were accepted often enough to show (an exactness test passes trivially for a drafter that
never drafts); its seeded samples equal plain seeded sampling's, with drafts verified.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field

import pytest
from test_loop import GREEDY, run
from tiny import ARCHITECTURES, VOCAB, tiny_backend
from tiny_pairs import tiny_draft_backend

from decodekit.budget import DEFAULT_CPU_COST, LatencyCurve
from decodekit.drafters import METHODS, CompositeDrafter, NoDrafter, make_drafter, takes_draft
from decodekit.drafters.base import attach_target
from decodekit.sampling import SamplingConfig

MAX_NEW_TOKENS = (1, 7, 40)
MIN_TAU = 1.1  # committed tokens per verification step over a whole run
REPEAT = 8  # tokens of its prompt that the model's continuation must start by repeating


@dataclass(frozen=True)
class Method:
    name: str
    options: dict = field(default_factory=dict)
    # Some step must verify a draft at least this big (catches a tree method shrunk to a chain).
    largest_draft: int = 1

    def build(self, target):
        """The drafter, attached to `target`; methods with a draft model get a noisy copy of it."""
        if "+" in self.name and self.options:  # make_drafter takes no options for composites
            drafter = CompositeDrafter([make_drafter(part, **self.options) for part in self.name.split("+")])
        else:
            options = dict(self.options)
            if takes_draft(self.name):
                options["draft"] = tiny_draft_backend(target.name.removeprefix("tiny-"))
            drafter = make_drafter(self.name, **options)
        attach_target(drafter, target)
        return drafter

    @property
    def samples_its_drafts(self) -> bool:
        """Drafts drawn from a model's distribution: verified by speculative sampling, which keeps
        the target's distribution (tests/test_verify_multi_draft.py) but not plain sampling's
        very draws."""
        return takes_draft(self.name) or self.name == "self-spec"

    def __str__(self) -> str:
        options = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name}[{options}]" if options else self.name


# Built from the registry, so a newly registered method is covered with its defaults ("ar" never
# drafts: it is the reference).
CASES = [Method(name) for name in METHODS if name not in ("ar", "self-spec")] + [
    # The tiny models have 2 layers: self-spec drafts with the first (its default speedup of 2
    # would keep fewer than the first and the last).
    Method("self-spec", {"exit_layer": 1, "stop": "fixed", "max_draft": 4}),
    Method("copy-spec+token-recycling"),
    # Options that take other paths than the defaults: non-adaptive drafts are never cut to what
    # pays, and source="prompt" copies from the input only.
    Method("prompt-lookup", {"adaptive": False}),
    Method("copy-spec", {"adaptive": False}),
    Method("copy-spec", {"source": "prompt", "adaptive": False}),
    # Non-adaptive trees are the paper's whole template: the verifier must get masks of 20+ nodes right.
    Method("token-recycling", {"adaptive": False}, largest_draft=21),
    Method("copy-spec+token-recycling", {"adaptive": False}),
    # The paper's GPU-sized tree (window and n-gram branches all verified): on the CPU curve the
    # default cuts it.
    Method("lookahead", {"adaptive": False}),
    # Draft models: the classic fixed K, SpecDec++'s threshold, and wider multi-draft trees.
    Method("draft-model", {"stop": "fixed", "max_draft": 6}),
    Method("draft-model", {"stop": "threshold"}),
    Method("spectr", {"num_drafts": 4, "depth": 5}),
    Method("rsd", {"width": 3, "branch": 2, "depth": 3}, largest_draft=12),
]


GPU_COST = {1: 1.0, 128: 1.0}  # verifying n tokens costs what one does


class FixedCurve(LatencyCurve):
    """A cost curve that measurements never replace.

    The loop refines `backend.latency` with wall-clock timings of each forward. On the tiny
    models those are a few milliseconds, dominated by noise from whatever else the machine runs,
    so drafts would be sized, and adaptive drafters switched off, by chance: τ would pass or fail
    at random. A fixed curve makes every run draft the same.
    """

    def __init__(self, prior: dict[int, float]):
        super().__init__(prior=dict(prior))

    def record(self, num_tokens: int, seconds: float) -> None:
        pass


def fixed_backend(arch: str, cost: dict[int, float]):
    backend = tiny_backend(arch)  # a new object around the cached model: the curve stays ours
    backend.latency = FixedCurve(cost)
    return backend


def occurs(span: list[int], tokens: list[int]) -> bool:
    return any(tokens[i : i + len(span)] == span for i in range(len(tokens) - len(span) + 1))


@functools.cache
def repeating_prompts(arch: str, count: int = 6, seed: int = 0) -> tuple[tuple[int, ...], ...]:
    """Prompts whose greedy continuation starts by repeating REPEAT tokens of the prompt itself.

    Random tiny models never continue a pattern in their prompt, but their own greedy output
    falls into loops and runs (gemma3's drifts from one run to the next). So each prompt is a
    short word repeated, then the model's continuation of it, cut at the first point where the
    model's next REPEAT tokens are a copy of text already in the prompt: the text speculative
    methods are built for, copying from the prompt included.
    """
    rng = random.Random(seed)
    backend = tiny_backend(arch)
    found = []
    for _ in range(100):
        word = [rng.randrange(VOCAB - 2) for _ in range(rng.randint(2, 5))]
        start = word * rng.randint(3, 8)
        out, _ = run(backend, start, NoDrafter(), 64)
        cut = next((c for c in range(len(out) - REPEAT + 1) if occurs(out[c : c + REPEAT], start + out[:c])), None)
        if cut is not None:
            found.append(tuple(start + out[:cut]))
        if len(found) == count:
            return tuple(found)
    raise AssertionError(f"tiny-{arch} repeated itself after only {len(found)} of 100 prompts")


@functools.cache
def plain(arch: str, prompt: tuple[int, ...], max_new_tokens: int, sampling: SamplingConfig = GREEDY, seed: int = 0) -> list[int]:
    return run(tiny_backend(arch), list(prompt), NoDrafter(), max_new_tokens, sampling, seed)[0]


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("method", CASES, ids=str)
def test_greedy_equals_plain_decoding_and_drafts_are_accepted(method, arch):
    # CPU-shaped, not flat: on a flat curve every adaptive drafter verifies all it drafts, and
    # the code that cuts drafts to what pays (trimmed chains, subtrees, a composite's marginal
    # costs) would go untested. Whole, GPU-sized trees come from the non-adaptive cases.
    backend = fixed_backend(arch, DEFAULT_CPU_COST)
    # One drafter for all prompts, as a Decoder keeps it: what it learned carries over.
    drafter = method.build(backend)
    committed = steps = largest = 0
    for i, prompt in enumerate(repeating_prompts(arch)):
        for max_new in MAX_NEW_TOKENS:
            got, trace = run(backend, list(prompt), drafter, max_new)
            assert got == plain(arch, prompt, max_new), f"prompt {i}, max_new_tokens {max_new}"
            assert len(got) == max_new or got[-1] in backend.eos_token_ids
            committed += len(got)
            steps += len(trace)
            largest = max(largest, *(s.draft_len for s in trace))
    tau = committed / steps
    assert tau > MIN_TAU, f"{method} on {arch}: τ = {tau:.3f}, drafts were (almost) never accepted"
    assert largest >= method.largest_draft


SAMPLING = SamplingConfig(temperature=1.0)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("method", [m for m in CASES if not m.samples_its_drafts], ids=str)
def test_seeded_sampling_equals_plain_sampling(method, arch):
    # Flat: sampled text soon leaves the loops the prompts hold, first tokens get rejected, and on
    # a CPU curve adaptive drafters would then stop drafting, leaving the verifier little to judge.
    backend = fixed_backend(arch, GPU_COST)
    drafter = method.build(backend)
    drafted = 0
    for i, prompt in enumerate(repeating_prompts(arch)):
        got, trace = run(backend, list(prompt), drafter, 30, SAMPLING, seed=i)
        # Drafts come from the history, not from the random stream: every draw is plain sampling's.
        assert got == plain(arch, prompt, 30, SAMPLING, seed=i), f"prompt {i}"
        drafted += sum(s.draft_len for s in trace)
    assert drafted > 0  # the speculative-sampling verifier was really exercised


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("method", [m for m in CASES if m.samples_its_drafts], ids=str)
def test_sampled_drafts_are_verified_and_seeded(method, arch):
    """Sampled drafts carry the distribution they were drawn from, get accepted, and a seed
    gives the same text twice (the drafter's own draws are seeded from the call's seed)."""
    backend = fixed_backend(arch, GPU_COST)
    committed = steps = drafted = 0
    for i, prompt in enumerate(repeating_prompts(arch)[:3]):
        outputs = []
        for _ in range(2):
            drafter = method.build(backend)
            got, trace = run(backend, list(prompt), drafter, 30, SAMPLING, seed=i)
            outputs.append(got)
            drafted += sum(s.draft_len for s in trace)
            committed += len(got)
            steps += len(trace)
        assert outputs[0] == outputs[1], f"prompt {i}: the same seed gave different text"
    assert drafted > 0 and committed / steps > MIN_TAU, f"τ = {committed / steps:.3f}: sampled drafts were never accepted"
