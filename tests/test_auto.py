import pytest
from tiny import tiny_backend

from decodekit import DecodekitError, Decoder
from decodekit.auto import AutoChoice, choose_method
from decodekit.drafters import NoDrafter


def test_auto_measures_every_candidate_and_keeps_the_fastest():
    backend = tiny_backend("llama")
    choice = choose_method(backend, [[1, 2, 3, 1, 2, 3], [5, 6, 5, 6, 5]], ["ar", "prompt-lookup", "copy-spec"],
                           max_new_tokens=12)
    assert set(choice.tokens_per_s) == {"ar", "prompt-lookup", "copy-spec"}
    assert choice.method == max(choice.tokens_per_s, key=choice.tokens_per_s.get)
    assert choice.describe().startswith(f"auto picked {choice.method}")


def test_decoder_auto_uses_the_pick_and_stays_exact():
    backend = tiny_backend("qwen2")
    decoder = Decoder(backend, "auto", sample=["abcabcabc", "hello hello"])
    assert isinstance(decoder.auto_choice, AutoChoice) and decoder.method == decoder.auto_choice.method
    assert decoder.drafter is decoder.auto_choice.drafter  # the learned budget state carries over
    expected = Decoder(backend, "ar").generate("xyzxyz", max_new_tokens=20).token_ids
    assert decoder.generate("xyzxyz", max_new_tokens=20).token_ids == expected


def test_auto_needs_a_sample():
    with pytest.raises(DecodekitError, match="sample"):
        Decoder(tiny_backend("llama"), "auto")


def test_describe_ranks():
    assert AutoChoice("ar", NoDrafter(), {"ar": 2.0, "b": 1.0}).describe() == "auto picked ar: ar 2.0 tok/s, b 1.0 tok/s"
    described = AutoChoice("b", NoDrafter(), {"a": 1.0, "b": 2.0}, draft_per_step=1.5, tau=1.25).describe()
    assert described == "auto picked b (drafting 1.5 tokens/step, tau 1.25): b 2.0 tok/s, a 1.0 tok/s"
