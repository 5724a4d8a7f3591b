"""Token healing on the tiny models (the real-model case, " Par" -> " Paris", is in
tests/test_real_constraints.py)."""

from __future__ import annotations

import pytest
from tiny import tiny_backend

from decodekit.api import Decoder
from decodekit.constraints.healing import PrefixStripper, heal_prompt, healed_grammar
from decodekit.grammar import regex


@pytest.fixture(scope="module")
def decoder():
    return Decoder(tiny_backend("llama"), "ar")


def test_heal_prompt_takes_back_the_last_token_and_its_text(decoder):
    tokenizer = decoder.backend.grammar_tokenizer()
    ids = decoder.backend.encode("hello wor")
    healing = heal_prompt(ids, tokenizer)
    assert healing.prompt_ids == ids[:-1] and healing.prefix == "r"


def test_heal_prompt_backs_up_to_a_whole_character(decoder):
    tokenizer = decoder.backend.grammar_tokenizer()
    ids = decoder.backend.encode("café")  # byte tokens: "é" is two of them
    healing = heal_prompt(ids, tokenizer)
    assert healing.prefix == "é" and healing.prompt_ids == ids[:-2]


def test_nothing_is_taken_back_across_a_special_token_or_from_a_one_token_prompt(decoder):
    tokenizer = decoder.backend.grammar_tokenizer()
    bos = decoder.backend.tokenizer.bos_token_id
    assert not heal_prompt(decoder.backend.encode("ab") + [bos], tokenizer).active
    assert not heal_prompt(decoder.backend.encode("a"), tokenizer).active


def test_healed_greedy_output_continues_as_the_whole_prompt_would(decoder):
    # One token per byte: the only way to rewrite the last byte is that byte, so healing must
    # give exactly the unhealed continuation, and the caller's text must not repeat the byte.
    for prompt in ["the cat sat on the m", "abcabcab", "x = [1, 2, "]:
        plain = decoder.generate(prompt, max_new_tokens=12)
        healed = decoder.generate(prompt, max_new_tokens=12, heal=True)
        assert healed.stats.healed_tokens == 1
        assert healed.token_ids[1:] == plain.token_ids[: len(healed.token_ids) - 1]
        assert healed.text == plain.text[: len(healed.text)] and len(healed.text) >= 10


def test_healing_composes_with_a_grammar(decoder):
    result = decoder.generate("answer: ye", max_new_tokens=8, heal=True, regex="s!")
    assert result.text == "s!" and result.completed
    assert healed_grammar("ye", regex("s!")).kind == "regex"


def test_streamed_text_drops_the_prefix_once():
    stripper = PrefixStripper(" Par")
    assert stripper.push(" P") == ""
    assert stripper.push("aris is") == "is is"
    assert stripper.push(" big") == " big"
    # A tokenizer that loses the leading space when decoding on its own.
    assert PrefixStripper(" Par").push("Paris") == "is"
