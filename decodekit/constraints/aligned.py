"""Grammar-aligned sampling: ASAp (Park et al. 2024, "Grammar-Aligned Decoding", NeurIPS 2024,
arXiv 2405.21047; reference code github.com/ebmoon/transformers-GAD).

Constrained sampling (mask the refused tokens, renormalise: "GCD") draws a prefix w in proportion
to the model's P(w), not to the probability that the model completes w grammatically. The target
is the model conditioned on the grammar, Q(s) ∝ P(s) · 1[s ∈ L], and sampling from it token by
token needs each prefix's *expected future grammaticality* (EFG)

    θ(w) = Σ_x P(x | w) · θ(w x)        (θ = 1 for a complete string),

    Q(x | w) = P(x | w) · θ(w x) / θ(w).

θ is intractable, so ASAp learns it from its own samples (§4 of the paper): a trie holds the
prefixes sampled so far with an estimate θ̂. A prefix never reached uses GCD's guess — 1 when the
grammar allows it, 0 when not — and after each sample θ̂ is recomputed bottom-up along its path
with the rule above, over *all* allowed children, the ones never sampled counting 1:

    θ̂(w) = (Σ_{x allowed} P(x | w) − Σ_{x visited} P(x | w)) + Σ_{x visited} P(x | w) · θ̂(w x)

so a node needs only its allowed mass and, per visited child, P(x | w). θ̂ never falls below θ
(an over-approximation: a refused token's θ is 0 exactly, an allowed one's at most 1), it is exact
once a subtree has been explored, and the distribution ASAp samples from converges to Q.

How the loop drives it (`AlignedConstraint`, one per generation, all sharing one trie):
- `apply` reads the model's unconstrained P(· | w) at the current prefix (softmax(logits / T)) and
  records the allowed mass; it returns the grammar-masked logits plus T · log θ̂(w x) for the
  visited children, so the loop's softmax(logits / T) samples ∝ P(x | w) · θ̂(w x).
- `commit` moves down the trie (adding the committed child with its P(x | w)); `finish`, after
  the generation, updates θ̂ along the path. Updating once per sample is enough: a sample never
  returns to a node it left, so nothing it learns can change its own later draws.

Forced tokens. Where the grammar forces text (a key name, a closing brace), GrammarConstraint
fast-forwards: it commits the forced tokens without a forward of their own, so their P(x | w)
is never seen. But the target Q weighs every string by the model's probability of *all* its
tokens: over a forced edge θ(w) = P(f | w) · θ(w f), and dropping that factor would favour
prefixes that lead into long forced stretches the model finds unlikely. So aligned sampling does
not fast-forward: each forced token is one step in which the grammar's mask allows only that
token (the mask GrammarConstraint builds at a forced state), the token is drawn with
probability 1, and `apply` records P(f | w) like any other. This costs one forward per forced
token, the price of sampling the exact target.

The end. When the grammar can take nothing more (stopped), the string is complete: θ = 1 and the
loop is handed EOS, which is not weighed by the model's P(EOS | w) — the grammar ends the string.
Where the grammar may end but could go on, EOS is an allowed token like any other, drawn with
the model's probability. So the target is: Q(s) ∝ the product of P(x | prefix) over the tokens of
s, the EOS included when the model chose it, not when the grammar imposed it. A sample cut short
(max_new_tokens, the context) leaves its last prefix unvisited, so it keeps GCD's guess.

Only plain temperature sampling: top-k / top-p / min-p / typical-p would change P(· | w)
depending on the prefix in ways θ does not model. Only one token per step (method "ar"): a
drafter's tokens would be verified against the reweighted logits, and the trie would miss the
distributions at the accepted draft positions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from decodekit.constraints.constraint import GrammarConstraint
from decodekit.errors import DecodekitError
from decodekit.sampling import SamplingConfig
from decodekit.types import Draft


@dataclass(eq=False)
class Node:
    """One sampled prefix w in the trie; the root is the empty prefix (after the prompt)."""

    log_prob: float = 0.0  # log P(x | parent): the edge into this node (0 at the root)
    log_theta: float = 0.0  # log θ̂(w); 0 (θ̂ = 1, GCD's guess for an allowed prefix) until w is visited
    log_allowed: float | None = None  # log Σ_{x allowed} P(x | w); None until a forward at w was seen
    allowed_count: int = 0  # how many tokens the grammar allows after w
    complete: bool = False  # the string ends here (the grammar stopped, or EOS was committed)
    children: dict[int, Node] = field(default_factory=dict)  # token -> node, the visited children

    @property
    def theta(self) -> float:
        return math.exp(self.log_theta)


def log_expected_grammaticality(log_allowed: float, allowed_count: int,
                                children: Sequence[tuple[float, float]]) -> float:
    """log θ̂(w) from what the trie knows at w: ASAp's update (Park et al. 2024, §4)

        θ̂(w) = (allowed mass − Σ_visited P(x | w)) + Σ_visited P(x | w) · θ̂(w x)

    `children`: (log P(x | w), log θ̂(w x)) per visited child. Log space, because the θ̂ of a long
    JSON document is a product of hundreds of probabilities. Once every allowed child has been
    visited, the unvisited mass is 0 exactly, not a rounding residue that would swamp a small θ.

    Allowed mass 0.6 over 3 tokens; one child visited, P = 0.4 and θ̂ = 0.5: 0.2 + 0.4 · 0.5.

    >>> round(math.exp(log_expected_grammaticality(math.log(0.6), 3, [(math.log(0.4), math.log(0.5))])), 6)
    0.4
    """
    terms = [log_prob + log_theta for log_prob, log_theta in children]
    if len(children) < allowed_count and log_allowed > -math.inf:
        unvisited = 1.0 - sum(math.exp(log_prob - log_allowed) for log_prob, _ in children)
        if unvisited > 0:
            terms.append(log_allowed + math.log(unvisited))
    return _logsumexp(terms)


def _logsumexp(values: list[float]) -> float:
    top = max(values, default=-math.inf)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


class ExpectedGrammaticality:
    """The EFG trie shared by the samples of one prompt under one grammar, one model and one
    temperature (θ̂ means nothing for another). Nodes are keyed by generated token ids."""

    def __init__(self) -> None:
        self.root = Node()
        self.samples = 0  # paths learned from

    def node(self, prefix: Sequence[int]) -> Node | None:
        """The node of `prefix` (generated ids), or None if no sample has reached it."""
        node = self.root
        for token in prefix:
            child = node.children.get(token)
            if child is None:
                return None
            node = child
        return node

    def theta(self, prefix: Sequence[int]) -> float:
        """θ̂(prefix); 1 for a prefix no sample reached (GCD's guess: ask only for prefixes the
        grammar allows)."""
        node = self.node(prefix)
        return 1.0 if node is None else node.theta

    def update(self, path: Sequence[Node]) -> None:
        """Recompute θ̂ bottom-up along one sample's path (root first)."""
        for node in reversed(path):
            if node.complete or node.log_allowed is None:
                node.log_theta = 0.0  # a complete string, or a prefix whose forward was never seen
            else:
                node.log_theta = log_expected_grammaticality(
                    node.log_allowed, node.allowed_count,
                    [(child.log_prob, child.log_theta) for child in node.children.values()])
        self.samples += 1


def check_aligned_sampling(sampling: SamplingConfig) -> None:
    """ASAp samples ∝ P(x | w) · θ̂(w x) with P the model's softmax(logits / T): nothing else."""
    if sampling.temperature <= 0:
        raise DecodekitError(f"aligned sampling draws samples: temperature must be > 0, got {sampling.temperature}")
    changed = [name for name, off in (("top_k", 0), ("top_p", 1.0), ("min_p", 0.0), ("typical_p", 1.0),
                                                    ("epsilon_cutoff", 0.0), ("eta_cutoff", 0.0))
               if getattr(sampling, name) != off]
    if changed:
        raise DecodekitError(f"aligned sampling supports plain temperature sampling only: turn off {', '.join(changed)} "
                             "(or pass aligned=False for plain constrained sampling)")


class AlignedConstraint:
    """The loop's constraint part for one ASAp generation: GrammarConstraint's masks, reweighted
    by the trie's θ̂, and no fast-forward (see the module docstring). Call `finish()` after the
    generation, so the trie learns from it."""

    def __init__(self, grammar: GrammarConstraint, trie: ExpectedGrammaticality, sampling: SamplingConfig):
        check_aligned_sampling(sampling)
        self.grammar = grammar
        self.trie = trie
        self.temperature = float(sampling.temperature)
        self.path = [trie.root]  # the nodes of the committed prefix, root first
        self.log_probs: torch.Tensor | None = None  # [vocab] log P(· | w) of the last apply, for commit
        self.finished = False

    @property
    def completed(self) -> bool:
        return self.grammar.completed

    def trim(self, draft: Draft) -> tuple[Draft, torch.Tensor]:
        if draft.tokens:
            raise DecodekitError("aligned sampling (ASAp) decodes one token at a time: use method 'ar', "
                                 f"not a drafter (got a {len(draft.tokens)}-token draft)")
        return self.grammar.trim(draft)

    def apply(self, logits: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        """logits [1, vocab] at the committed prefix w -> the grammar-masked logits plus
        T · log θ̂(w x) for its visited children x."""
        if allowed is None or logits.shape[0] != 1:
            raise RuntimeError(f"aligned sampling expects one logits row with its grammar mask, got {tuple(logits.shape)}")
        node = self.path[-1]
        row = allowed[0].to(logits.device)  # [vocab] bool
        log_probs = torch.log_softmax(logits[0].float() / self.temperature, dim=-1)  # [vocab]
        node.log_allowed = float(torch.logsumexp(log_probs[row].double(), dim=0))
        node.allowed_count = int(row.sum())
        self.log_probs = log_probs
        out = self.grammar.apply(logits.float(), allowed)  # [1, vocab]
        if node.children:
            tokens = list(node.children)
            bias = torch.tensor([self.temperature * node.children[t].log_theta for t in tokens],
                                dtype=out.dtype, device=out.device)
            weighted = out.clone()
            weighted[0, tokens] += bias
            # θ̂ = 0 for every allowed token can only come from rounding (this prefix was drawn, so
            # its θ̂ was > 0): fall back to GCD's weights rather than sample from nothing.
            dead = all(node.children[t].log_theta == -math.inf for t in tokens)
            if not dead or bool(torch.isfinite(weighted).any()):
                out = weighted
        return out

    def commit(self, tokens: list[int]) -> list[int]:
        """Advance the grammar and the trie over the committed token; no fast-forward. Returns
        EOS (already consumed) when the grammar has stopped."""
        matcher = self.grammar.matcher
        for token in tokens:
            if self.log_probs is None:
                raise RuntimeError("aligned sampling commits one token per step, after apply() saw its distribution")
            node = self.path[-1]
            child = node.children.get(token)
            if child is None:
                child = node.children[token] = Node(log_prob=float(self.log_probs[token]))
            self.log_probs = None
            self.path.append(child)
            if not matcher.consume_token(token):
                raise RuntimeError(f"token {token} was committed but the grammar refuses it: {matcher.get_error()}")
            if token in self.grammar.eos_token_ids:
                child.complete = True
                return []
        if matcher.is_stopped():
            self.path[-1].complete = True
            matcher.consume_token(self.grammar.eos)
            return [self.grammar.eos]
        return []

    def finish(self) -> None:
        """Update the trie with this generation's path (once; later calls do nothing)."""
        if not self.finished:
            self.finished = True
            self.trie.update(self.path)
