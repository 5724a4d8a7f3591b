"""The data that moves around the decode loop.

    drafter.propose(...)  -> Draft          tokens to check, as a chain or a tree
    backend.forward(...)  -> logits          [pending + draft, vocab]
    verify(...)           -> VerifyResult    which draft tokens survive, plus one new token
    the loop              -> Step            what one iteration committed, and what it cost
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import torch

from decodekit.tree import ROOT, check_parents_first, subtree


@dataclass
class Draft:
    """Proposed continuation of the committed text.

    A chain is the common case (`parents` None: token i follows token i-1). A tree lists its
    nodes parents-first; `parents[i]` is the index of node i's parent in `tokens`, or -1 when
    node i directly follows the last committed token (the root)::

        tokens  = [a, b, c, d]        root ─┬─ a ─┬─ b
        parents = [-1, 0, 0, -1]            │     └─ c
                                            └─ d
    """

    tokens: list[int] = field(default_factory=list)
    parents: list[int] | None = None
    # [len(tokens), vocab]: the distribution each token was drawn from. None means the drafter
    # is deterministic (prompt lookup, recycling, Jacobi): its tokens are point masses.
    draft_probs: torch.Tensor | None = None
    # How the verifier chooses among siblings drawn from a distribution (draft_probs given):
    #   "recursive": children are tried in draft order, each against its own draft_probs row
    #       (recursive rejection sampling: siblings drawn i.i.d., as SpecInfer does, or without
    #       replacement, as Recursive Speculative Decoding does, with each row the distribution
    #       that sibling was actually drawn from);
    #   "k-seq": SpecTr's k-sequential selection over k i.i.d. draft sequences merged into one
    #       trie. `draws[node]` lists the children of `node` (ROOT included) in the order the
    #       sequences through `node` reached them, repeats included, so len(draws[ROOT]) == k.
    rule: Literal["recursive", "k-seq"] = "recursive"
    draws: dict[int, list[int]] | None = None
    # Set when the loop verified only part of a proposal (a grammar refused the rest): node i
    # is node origin[i] of the draft the drafter proposed. Drafters that keep per-node notes
    # from propose() read them through `origins` in observe().
    origin: list[int] | None = None

    def __post_init__(self):
        if self.parents is not None:
            if len(self.parents) != len(self.tokens):
                raise ValueError(f"draft has {len(self.tokens)} tokens but {len(self.parents)} parents")
            check_parents_first(self.parents)
        if self.rule == "k-seq":
            if self.draft_probs is None or self.draws is None:
                raise ValueError("a k-seq draft needs draft_probs and draws")
            parents = self.parent_list()
            for node, drawn in self.draws.items():
                if any(parents[child] != node for child in drawn):
                    raise ValueError(f"draws[{node}] lists a node that is not a child of {node}")

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def is_chain(self) -> bool:
        return self.parents is None

    def parent_list(self) -> list[int]:
        """Parent indices for chains and trees alike (a chain is a one-branch tree)."""
        return list(range(-1, len(self.tokens) - 1)) if self.parents is None else self.parents

    @classmethod
    def empty(cls) -> Draft:
        return cls()

    @property
    def origins(self) -> list[int]:
        """For each node, its index in the proposed draft."""
        return list(range(len(self.tokens))) if self.origin is None else self.origin

    def restrict(self, kept: list[int], leaves: set[int] = frozenset()) -> Draft:  # type: ignore[assignment]
        """This draft cut to the nodes `kept` (ascending, closed under parents), renumbered.

        `leaves` are kept nodes whose children are all dropped; every drawn child of another
        kept node must be kept, so the k-seq draws of kept nodes stay whole.

        >>> Draft([5, 6, 7], [-1, 0, -1]).restrict([0, 2]).tokens
        [5, 7]
        """
        if len(kept) == len(self.tokens):
            return self
        index = {old: new for new, old in enumerate(kept)}
        tokens, new_parents = subtree(self.tokens, self.parent_list(), kept)
        probs = self.draft_probs[kept] if self.draft_probs is not None else None
        draws = None
        if self.draws is not None:
            draws = {ROOT if node == ROOT else index[node]: [index[c] for c in drawn]
                     for node, drawn in self.draws.items() if node == ROOT or (node in index and node not in leaves)}
        is_chain = self.is_chain and new_parents == list(range(-1, len(kept) - 1))
        origins = self.origins
        return Draft(tokens, None if is_chain else new_parents, probs, self.rule, draws,
                     [origins[i] for i in kept])


@dataclass
class VerifyResult:
    """Outcome of verifying one draft.

    `accepted` holds the indices (into draft.tokens) of the accepted path, root first;
    `tokens` is what gets committed: the accepted draft tokens and then the model's own token.
    """

    accepted: list[int]
    tokens: list[int]

    @property
    def num_accepted(self) -> int:
        return len(self.accepted)


# Why generation ended: the loop gives the first three; consumers add "stop" (a stop string
# was produced) and "interrupted" (the consumer stopped reading).
StopReason = Literal["eos", "length", "context", "stop", "interrupted"]

# Where a committed token came from: an accepted draft, the model's own step, or a grammar that
# left only one choice.
TokenSource = Literal["draft", "model", "grammar"]


@dataclass
class Step:
    """One iteration of the decode loop, as yielded to consumers."""

    tokens: list[int]  # committed this step (already cut at EOS / the token budget)
    draft_len: int
    num_accepted: int
    draft_s: float
    forward_s: float
    other_s: float
    stop_reason: StopReason | None = None  # set on the loop's last step
    forced: int = 0  # of `tokens`, how many a grammar forced (committed without a forward of their own)
    leading_forced: int = 0  # of `forced`, how many come first (what a grammar forces before the first token)

    def runs(self) -> list[tuple[TokenSource, list[int]]]:
        """The committed tokens in runs by where they came from, in order: the grammar's
        opening, the accepted draft tokens, the model's own token, what the grammar forced after.

        >>> Step([7, 8, 9], draft_len=4, num_accepted=2, draft_s=0, forward_s=0, other_s=0).runs()
        [('draft', [7, 8]), ('model', [9])]
        """
        end = len(self.tokens) - (self.forced - self.leading_forced)
        own = self.tokens[self.leading_forced:end]
        drafted = min(self.num_accepted, len(own))
        runs: list[tuple[TokenSource, list[int]]] = [
            ("grammar", self.tokens[:self.leading_forced]), ("draft", own[:drafted]), ("model", own[drafted:]),
            ("grammar", self.tokens[end:])]
        return [(source, tokens) for source, tokens in runs if tokens]


@dataclass
class GenerationStats:
    """Totals over one generate() call."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    steps: int = 0
    wall_s: float = 0.0
    # The first step: the prompt's forward (the prefill) and the tokens it committed. The rest
    # of wall_s is decoding proper, where speculation acts.
    prefill_s: float = 0.0
    prefill_tokens: int = 0
    draft_s: float = 0.0
    forward_s: float = 0.0
    other_s: float = 0.0
    # tokens committed per step -> how many steps committed that many (an AR step commits 1)
    accepted_hist: dict[int, int] = field(default_factory=dict)
    drafted_tokens: int = 0
    forced_tokens: int = 0  # committed because a grammar forced them (fast-forward)
    healed_tokens: int = 0  # prompt tokens taken back by token healing (the output rewrites them)
    stop_reason: StopReason | None = None
    # With a grammar: whether the text is a complete match (False when max_new_tokens cut it
    # short). None without one.
    completed: bool | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens/s after the first step: the speed without the prompt's prefill."""
        seconds = self.wall_s - self.prefill_s
        return (self.new_tokens - self.prefill_tokens) / seconds if seconds > 0 else 0.0

    @property
    def tau(self) -> float:
        """Mean tokens committed per verification step (1.0 for plain decoding)."""
        return self.new_tokens / self.steps if self.steps else 0.0

    @property
    def acceptance_rate(self) -> float:
        """Accepted draft tokens over drafted tokens."""
        accepted = self.new_tokens - self.steps - self.forced_tokens
        return accepted / self.drafted_tokens if self.drafted_tokens else 0.0

    def add(self, step: Step) -> None:
        self.steps += 1
        self.new_tokens += len(step.tokens)
        self.drafted_tokens += step.draft_len
        self.forced_tokens += step.forced
        self.draft_s += step.draft_s
        self.forward_s += step.forward_s
        self.other_s += step.other_s
        hist = Counter(self.accepted_hist)
        hist[len(step.tokens)] += 1
        self.accepted_hist = dict(sorted(hist.items()))

    def as_dict(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "steps": self.steps,
            "wall_s": round(self.wall_s, 4),
            "tokens_per_s": round(self.tokens_per_s, 3),
            "prefill_s": round(self.prefill_s, 4),
            "decode_tokens_per_s": round(self.decode_tokens_per_s, 3),
            "tau": round(self.tau, 3),
            "acceptance_rate": round(self.acceptance_rate, 3),
            "accepted_hist": self.accepted_hist,
            "forced_tokens": self.forced_tokens,
            "healed_tokens": self.healed_tokens,
            "draft_s": round(self.draft_s, 4),
            "forward_s": round(self.forward_s, 4),
            "other_s": round(self.other_s, 4),
            "stop_reason": self.stop_reason,
            "completed": self.completed,
        }


@dataclass(frozen=True)
class Candidate:
    """One of a search method's n-best outputs (beam search and its kin)."""

    text: str
    token_ids: list[int]  # generated tokens only, an end-of-sequence token included
    score: float  # what the search ranked it by (beam search: log p / length ** length_penalty)
    log_prob: float | None  # log p(token_ids | prompt) under the model; None for superposed drafts


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]  # generated tokens only
    prompt_ids: list[int]
    stats: GenerationStats
    candidates: list[Candidate] = field(default_factory=list)  # a search method's n-best, best first

    @property
    def completed(self) -> bool | None:
        """With a grammar: whether the text is a complete match of it. None without one."""
        return self.stats.completed
