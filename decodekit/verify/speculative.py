"""Speculative sampling over chains and trees: the output is distributed exactly as if the
model had sampled one token at a time.

Deterministic drafts (draft_probs None, point masses). At each node the model's token is drawn
from the target with the uniform keyed to that position, exactly as plain sampling would draw
it, and the walk continues into the child carrying that token, if any. A child x is therefore
accepted with probability p(x), and after a rejection the emitted token follows p with the
rejected children removed — the point-mass case of rejection sampling (Leviathan et al. 2023)
and of recursive rejection over siblings (SpecInfer, Miao et al. 2024) — while using the very
draws plain sampling uses, so a seeded run reproduces plain sampling token for token.

Sampled drafts (draft_probs given): children are tried in draft order; child x drawn from q is
accepted with probability min(1, p(x) / q(x)), and on rejection the target becomes the residual
norm(max(p - q, 0)) (SpecInfer Alg. 2 with Leviathan et al.'s acceptance rule per child). If no
child is accepted the model's token is drawn from the residual. This is draft.rule "recursive".

draft.rule "k-seq": SpecTr's k-sequential selection (decodekit.verify.k_seq). The candidates at
a node are draft.draws[node], the k i.i.d. draft sequences through it in draw order; each is
accepted with probability min(1, p(x) / (rho q(x))) for one rho >= 1 chosen per node, and if none
is, the token comes from K-SEQ's residual. An accepted candidate's own draws are the next level's
candidates: given the node, the sequences through it continue i.i.d., whatever chose it.
"""

from __future__ import annotations

import torch

from decodekit.sampling import SamplingConfig, probabilities
from decodekit.tree import ROOT, children, logits_row
from decodekit.types import Draft, VerifyResult
from decodekit.verify import k_seq
from decodekit.verify.random import Randomness, inverse_cdf

# Stream 0 of a position draws its token; streams 1.. decide acceptances of sampled children.
TOKEN_STREAM = 0


def verify_sampled(
    draft: Draft, target_logits: torch.Tensor, sampling: SamplingConfig, rng: Randomness, position: int
) -> VerifyResult:
    """target_logits: [1 + len(draft), vocab]; draft.draft_probs: [len(draft), vocab] or None.

    `position` is the absolute index (prompt included) of the first token this step decides.
    """
    kids = children(draft.parent_list())
    node, path = ROOT, list[int]()
    while True:
        target_probs = probabilities(target_logits[logits_row(node)], sampling)  # [vocab]
        here = position + len(path)
        candidates = kids.get(node, [])
        if draft.draft_probs is None:
            token = inverse_cdf(target_probs, rng.uniform(here, TOKEN_STREAM))
            accepted = next((c for c in candidates if draft.tokens[c] == token), None)
        else:
            if draft.rule == "k-seq":
                accepted, residual = _try_k_seq(draft, node, target_probs, rng, here)
            else:
                accepted, residual = _try_sampled_children(draft.tokens, draft.draft_probs, candidates, target_probs, rng, here)
            if accepted is None:
                token = inverse_cdf(residual, rng.uniform(here, TOKEN_STREAM))
        if accepted is None:
            return VerifyResult(path, [draft.tokens[i] for i in path] + [token])
        path.append(accepted)
        node = accepted


def _try_sampled_children(
    tokens: list[int], draft_probs: torch.Tensor, candidates: list[int], target_probs: torch.Tensor, rng: Randomness,
    position: int,
) -> tuple[int | None, torch.Tensor]:
    """Offer each sampled child in turn; return the accepted one, or None and the residual."""
    residual = target_probs
    for attempt, child in enumerate(candidates, start=1):
        token = tokens[child]
        child_probs = draft_probs[child].to(target_probs.device, torch.float32)  # [vocab]
        target_now = residual / residual.sum()
        drawn_with = float(child_probs[token])
        # q(x) = 0 for a drawn x happens only through rounding (a low-precision row): the ratio
        # p/q is then unbounded, so x is accepted exactly when the target allows it at all.
        accept_prob = min(1.0, float(target_now[token]) / drawn_with) if drawn_with > 0 else float(target_now[token] > 0)
        if rng.uniform(position, attempt) < accept_prob:
            return child, residual
        leftover = (target_now - child_probs).clamp_min(0.0)
        # Zero leftover only happens through rounding (q covered p entirely); keep p then.
        residual = leftover if float(leftover.sum()) > 0 else target_now
    return None, residual


def _try_k_seq(
    draft: Draft, node: int, target_probs: torch.Tensor, rng: Randomness, position: int
) -> tuple[int | None, torch.Tensor]:
    """K-SEQ over the children drawn at `node`; return the accepted child, or None and the residual."""
    assert draft.draft_probs is not None
    drawn = (draft.draws or {}).get(node, [])
    if not drawn:
        return None, target_probs
    q = draft.draft_probs[drawn[0]]  # the candidates share the row they were drawn from; any device
    index, residual = k_seq.select([draft.tokens[child] for child in drawn], q, target_probs, rng, position)
    return (None if index is None else drawn[index]), residual
