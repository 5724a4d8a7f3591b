import pytest
from tiny import byte_tokenizer

from decodekit.detok import IncrementalDecoder, StopStringFilter

TEXTS = ["plain ascii text", "héllo wörld", "emoji 🎉🚀 and 漢字 mixed", "ends mid 🎉"]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("chunk", [1, 2, 3, 5])
def test_chunks_join_to_full_text_and_are_never_broken(text, chunk):
    tokenizer = byte_tokenizer()
    ids = tokenizer.encode(text)
    decoder = IncrementalDecoder(lambda ids: tokenizer.decode(ids, skip_special_tokens=True))
    pieces = [decoder.push(ids[i : i + chunk]) for i in range(0, len(ids), chunk)]
    pieces.append(decoder.flush())
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


def test_incomplete_character_is_held_back():
    tokenizer = byte_tokenizer()
    ids = tokenizer.encode("a🎉")  # 1 + 4 byte tokens
    decoder = IncrementalDecoder(lambda ids: tokenizer.decode(ids, skip_special_tokens=True))
    assert decoder.push(ids[:1]) == "a"
    assert decoder.push(ids[1:3]) == ""
    assert decoder.push(ids[3:4]) == ""
    assert decoder.push(ids[4:]) == "🎉"


@pytest.mark.parametrize(
    "stop, chunks, emitted",
    [
        (["END"], ["abc", "dEN", "Dxyz"], "abcd"),
        (["END"], ["abcEND", "more"], "abc"),
        (["END", "cd"], ["ab", "c", "d"], "ab"),
        (["END"], ["abE", "x"], "abEx"),  # a partial match that turns out not to be one
        ([], ["a", "b"], "ab"),
    ],
)
def test_stop_strings(stop, chunks, emitted):
    f = StopStringFilter(stop)
    out = "".join(f.push(c) for c in chunks) + f.flush()
    assert out == emitted
    assert f.stopped == (emitted != "".join(chunks))
