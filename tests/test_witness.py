"""The judge's witness: a commit is faithful only if it follows the argmax walk down the draft,
checked from the draft and the logits alone, whatever the verifier claims it accepted."""

import pytest
import torch
from tiny import tiny_backend

import decodekit.loop
from decodekit import Decoder
from decodekit.bench.witness import TOP_K, Witness
from decodekit.tree import ROOT
from decodekit.types import Draft, VerifyResult

VOCAB = 32


def rows(*argmaxes: int, second: dict[int, int] | None = None, tie: dict[int, int] | None = None) -> torch.Tensor:
    """Logit rows whose largest entry is at the given tokens (then `second`, or an exact `tie`)."""
    logits = torch.zeros(len(argmaxes), VOCAB)
    for row, token in enumerate(argmaxes):
        logits[row, token] = 5.0
        if second and row in second:
            logits[row, second[row]] = 4.0
        if tie and row in tie:
            logits[row, tie[row]] = 5.0
    return logits


def witnessed(draft: Draft, logits: torch.Tensor, committed: list[int]) -> Witness:
    witness = Witness()
    witness(draft, logits, VerifyResult(accepted=[], tokens=committed))  # `accepted` is not trusted anyway
    return witness


def test_a_chain_accepted_as_far_as_the_argmax_goes_is_faithful():
    witness = witnessed(Draft([3, 4, 5]), rows(3, 4, 9, 1), [3, 4, 9])
    assert witness.unfaithful_at is None and [e.token for e in witness.positions] == [3, 4, 9]
    assert witness.positions[0].top_ids[0] == 3 and len(witness.positions[0].top_ids) == TOP_K


def test_accepting_a_sibling_that_is_not_the_argmax_is_caught():
    # root children 7 (node 0) and 8 (node 1); row 0's argmax is 7, yet 8 and its row's argmax are committed
    draft = Draft([7, 8], parents=[ROOT, ROOT])
    witness = witnessed(draft, rows(7, 2, 3), [8, 3])
    assert witness.unfaithful_at == 0 and "largest logit is token 7" in witness.reason
    assert witnessed(draft, rows(7, 2, 3), [7, 2]).unfaithful_at is None  # the argmax sibling is fine


def test_a_token_one_rank_down_is_caught_at_its_position():
    witness = witnessed(Draft([3, 4]), rows(3, 4, 6, second={1: 11}), [3, 11])
    assert witness.unfaithful_at == 1 and not witness.faithful_through(1) and witness.faithful_through(0)


def test_an_exact_tie_may_go_either_way():
    assert witnessed(Draft([3]), rows(3, 6, tie={0: 12}), [12]).unfaithful_at is None


def test_committing_on_past_the_models_own_token_is_caught():
    witness = witnessed(Draft([3, 4]), rows(3, 9, 1), [3, 9, 1])  # 9 is not a draft node, yet 1 follows
    assert witness.unfaithful_at == 2 and "no draft node" in witness.reason


def test_start_forgets_the_last_generation():
    witness = witnessed(Draft([3]), rows(4, 1), [3])
    assert witness.unfaithful_at == 0
    witness.start()
    assert witness.unfaithful_at is None and witness.positions == []


@pytest.mark.parametrize("method", ["prompt-lookup", "token-recycling", "ar"])
def test_every_method_is_faithful_through_the_loop(method):
    decoder = Decoder(tiny_backend("llama"), method)
    witness = Witness()
    result = decoder.generate("abc abc abc abc", max_new_tokens=24, witness=witness)
    assert witness.unfaithful_at is None
    assert [e.token for e in witness.positions][: len(result.token_ids)] == result.token_ids


def test_a_verifier_that_takes_the_second_best_token_is_caught_through_the_loop(monkeypatch):
    honest = decodekit.loop.verify

    def second_best(draft, logits, sampling, rng, position):
        result = honest(draft, logits, sampling, rng, position)
        if position % 5 == 0:  # now and then, one rank down at the step's first token
            return VerifyResult([], [int(torch.topk(logits[0], 2).indices[1])])
        return result

    monkeypatch.setattr(decodekit.loop, "verify", second_best)
    witness = Witness()
    Decoder(tiny_backend("llama"), "prompt-lookup").generate("abc abc abc abc", max_new_tokens=24, witness=witness)
    assert witness.unfaithful_at is not None
