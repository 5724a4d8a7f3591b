"""The public API on a tiny model: input checks with clear messages, streaming, stop strings."""

import pytest
from tiny import tiny_backend

from decodekit import DecodekitError, Decoder


@pytest.fixture(scope="module")
def decoder():
    return Decoder(tiny_backend("llama"), "prompt-lookup")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prompt": ""}, "empty"),
        ({"prompt": "a", "messages": [{"role": "user", "content": "a"}]}, "exactly one"),
        ({}, "exactly one"),
        ({"prompt": "hi", "max_new_tokens": 0}, "max_new_tokens"),
        ({"prompt": "hi", "top_p": 1.5}, "top_p"),
        ({"prompt": "hi", "temperature": -0.1}, "temperature"),
        ({"prompt": "x" * 600}, "context"),
        ({"messages": [{"content": "no role"}]}, "messages"),
    ],
)
def test_bad_input_is_named(decoder, kwargs, message):
    with pytest.raises(DecodekitError, match=message):
        decoder.generate(**kwargs)


def test_unknown_method():
    with pytest.raises(DecodekitError, match="unknown method 'nope'"):
        Decoder(tiny_backend("llama"), "nope")


def test_stream_equals_generate(decoder):
    result = decoder.generate("abcabcabc", max_new_tokens=30)
    assert "".join(decoder.stream("abcabcabc", max_new_tokens=30)) == result.text
    assert result.stats.new_tokens == len(result.token_ids) <= 30
    assert result.stats.steps == sum(result.stats.accepted_hist.values())
    assert result.stats.stop_reason in {"eos", "length"}


def test_stop_string_cuts_text(decoder):
    full = decoder.generate("abcabcabc", max_new_tokens=30).text
    assert len(full) > 6
    stop = full[3:5]
    cut = decoder.generate("abcabcabc", max_new_tokens=30, stop=[stop])
    assert cut.text == full[: full.index(stop)]
    assert cut.stats.stop_reason == "stop"


def test_ar_and_prompt_lookup_agree_through_the_api():
    backend = tiny_backend("gemma3")
    a = Decoder(backend, "ar").generate("hello hello hello", max_new_tokens=50)
    b = Decoder(backend, "prompt-lookup").generate("hello hello hello", max_new_tokens=50)
    assert a.token_ids == b.token_ids
    assert b.stats.steps <= a.stats.steps


def test_stats_time_the_prefill_apart_from_decoding(decoder):
    stats = decoder.generate("abcabcabc", max_new_tokens=30).stats
    assert 0 < stats.prefill_s < stats.wall_s
    assert 1 <= stats.prefill_tokens <= stats.new_tokens
    decode_s = stats.wall_s - stats.prefill_s
    assert stats.decode_tokens_per_s == pytest.approx((stats.new_tokens - stats.prefill_tokens) / decode_s)
    assert stats.as_dict()["prefill_s"] == round(stats.prefill_s, 4)
