"""The benchmark measures what a user would get: drafters learn across questions, as in real
use, but never from the answer they are being timed on (no warm-up on a measured question, and
every repeat starts from the drafter state its turn started with)."""

import re
from itertools import takewhile
from typing import ClassVar

import pytest
import torch
from test_timing import FakeClock, FakeDevice
from tiny import tiny_backend

from decodekit import drafters
from decodekit.bench.dataset import Question
from decodekit.bench.records import QuestionRecord, TurnResult
from decodekit.bench.runner import WARM_UP_PROMPT, BenchSettings, count_agreement, run_bench, score_turns
from decodekit.errors import DecodekitError
from decodekit.prompts import conversation_ids
from decodekit.types import Draft


class LearningSpy:
    """A drafter that 'learns' every prompt it is reset with, and logs what it knew each time."""

    name = "spy"
    log: ClassVar[list[tuple[list[tuple[int, ...]], tuple[int, ...]]]] = []

    def __init__(self):
        self.learned: list[tuple[int, ...]] = []

    def reset(self, prompt_ids, sampling=None, rng=None):
        LearningSpy.log.append((list(self.learned), tuple(prompt_ids)))
        self.learned.append(tuple(prompt_ids))

    def propose(self, history, budget):
        return Draft.empty()

    def observe(self, draft, result, target_logits):
        pass


@pytest.fixture()
def spy(monkeypatch):
    monkeypatch.setitem(drafters.METHODS, "spy", LearningSpy)
    LearningSpy.log = []
    return LearningSpy


QUESTIONS = [Question(1, "mt_bench", ["first turn", "second turn"]), Question(2, "qa", ["another question"])]


def test_warm_up_sees_no_measured_question_and_repeats_restart_from_the_turn_state(spy):
    backend = FakeDevice(FakeClock())
    settings = BenchSettings.parse(["spy"], max_new_tokens=3, repeats=2)
    records = run_bench(backend, QUESTIONS, settings)
    assert [r.method for r in records] == ["ar", "spy", "ar", "spy"]

    (warm_state, warm_prompt), *measured = spy.log
    assert warm_state == [] and backend.decode(list(warm_prompt)) == backend.decode(backend.encode(
        f"User: {WARM_UP_PROMPT}\n\nAssistant:"))
    assert all(WARM_UP_PROMPT not in turn and turn not in WARM_UP_PROMPT for q in QUESTIONS for turn in q.turns)

    # question 1 turn 1 (twice), turn 2 (twice), question 2 (twice)
    assert len(measured) == 6
    states = [state for state, _ in measured]
    prompts = [prompt for _, prompt in measured]
    assert prompts[0] == prompts[1] and prompts[2] == prompts[3] and prompts[4] == prompts[5]
    w, p11, p12 = warm_prompt, prompts[0], prompts[2]
    # Each repeat starts where its turn started; only the first run's learning carries on.
    assert states == [[w], [w], [w, p11], [w, p11], [w, p11, p12], [w, p11, p12]]


def test_a_method_may_be_listed_twice_with_different_options(spy):
    settings = BenchSettings.parse(["prompt-lookup", "prompt-lookup[max_draft=2]"])
    assert settings.labels == ["ar", "prompt-lookup", "prompt-lookup[max_draft=2]"]
    assert settings.methods[2].options == {"max_draft": 2}
    records = run_bench(FakeDevice(FakeClock()), QUESTIONS[1:], BenchSettings.parse(
        ["prompt-lookup", "prompt-lookup[max_draft=2]"], max_new_tokens=4))
    assert [r.method for r in records] == ["ar", "prompt-lookup", "prompt-lookup[max_draft=2]"]
    assert all(r.identical_to_ar for r in records[1:])


def test_ar_in_another_dtype_is_a_method_entry():
    settings = BenchSettings.parse(["ar@bf16", "prompt-lookup", "ar@fp32"])
    assert settings.labels == ["ar", "ar@bf16", "prompt-lookup", "ar@fp32"]
    assert settings.variants == ["bf16", "fp32"]
    assert BenchSettings.parse(["prompt-lookup"]).variants == []


@pytest.mark.parametrize("entry", ["ar@int8", "ar@bf16[x=1]", "ar@"])
def test_ar_in_another_dtype_rejects_unknown_dtypes_and_options(entry):
    with pytest.raises(DecodekitError, match=re.escape(f"'{entry}'")):
        BenchSettings.parse([entry])


def test_ar_in_another_dtype_needs_the_model_in_that_dtype():
    settings = BenchSettings.parse(["ar@bf16"], max_new_tokens=2)
    with pytest.raises(DecodekitError, match="'ar@bf16' needs the model loaded in bf16"):
        run_bench(FakeDevice(FakeClock()), QUESTIONS[1:], settings)
    with pytest.raises(DecodekitError, match="'ar@bf16' needs the model loaded in bf16"):
        run_bench(FakeDevice(FakeClock()), QUESTIONS[1:], settings, variants={"fp16": FakeDevice(FakeClock())})


def test_draft_fills_the_methods_that_take_a_draft_model():
    settings = BenchSettings.parse(["draft-model", "spectr", "rsd", "prompt-lookup", "draft-model[draft=y,max_draft=3]",
                                    "layer-skip[exit_layer=1]"], draft="x")
    options = {spec.label: spec.options for spec in settings.methods}
    assert options == {"ar": {}, "draft-model": {"draft": "x"}, "spectr": {"draft": "x"}, "rsd": {"draft": "x"},
                       "prompt-lookup": {}, "draft-model[draft=y,max_draft=3]": {"draft": "y", "max_draft": 3},
                       "layer-skip[exit_layer=1]": {"exit_layer": 1}}
    # the label stays as written: it names the row
    assert settings.labels[1:4] == ["draft-model", "spectr", "rsd"]
    assert BenchSettings.parse(["draft-model[draft=y]"]).methods[1].options == {"draft": "y"}


@pytest.mark.parametrize("entry", ["draft-model", "spectr", "rsd"])
def test_a_draft_model_method_without_a_draft_is_rejected(entry):
    with pytest.raises(DecodekitError, match=f"method '{entry}' needs a draft model"):
        BenchSettings.parse([entry])
    with pytest.raises(DecodekitError, match="needs a draft model"):
        BenchSettings.parse(["prompt-lookup", entry], draft="")


def reference_nll(backend, prompt, answer):
    """-log p(answer | prompt) from one plain forward of the transformers model, in float64."""
    with torch.no_grad():
        logits = backend.model(input_ids=torch.tensor([prompt + answer])).logits[0].double()
    log_probs = torch.log_softmax(logits, dim=-1)
    return -sum(float(log_probs[len(prompt) - 1 + i, token]) for i, token in enumerate(answer))


def text_turn(prompt, token_ids):
    return TurnResult(prompt_tokens=len(prompt), new_tokens=len(token_ids), wall_s=1.0, token_ids=token_ids, text="x")


def test_score_turns_is_the_nll_of_each_answer_under_the_model():
    backend = tiny_backend("llama")
    prompts = [backend.encode("User: hello\n\nAssistant:"), backend.encode("User: a longer question, then\n\nAssistant:"),
               backend.encode("User: nothing\n\nAssistant:")]
    answers = [[72, 105, 33, 10, 87], [200, 3, 3, 3, 17, 256], []]
    record = QuestionRecord(1, "qa", "ar", "decodekit", [text_turn(p, a) for p, a in zip(prompts, answers)])
    score_turns(backend, record, prompts)
    for turn, prompt, answer in zip(record.turns[:2], prompts, answers):
        assert turn.nll == pytest.approx(reference_nll(backend, prompt, answer), rel=1e-4)
        assert turn.nll is not None and turn.nll > 0
    assert record.turns[2].nll == 0.0  # an empty answer costs nothing
    # each turn is scored given its own prompt: the same answer after another prompt scores differently
    swapped = QuestionRecord(1, "qa", "ar", "decodekit", [text_turn(prompts[1], answers[0])])
    score_turns(backend, swapped, prompts[1:2])
    assert swapped.turns[0].nll == pytest.approx(reference_nll(backend, prompts[1], answers[0]), rel=1e-4)
    assert swapped.turns[0].nll != pytest.approx(record.turns[0].nll, rel=1e-4)


def ids_record(method, *turns):
    return QuestionRecord(1, "qa", method, "decodekit", [text_turn([1], list(ids)) for ids in turns])


@pytest.mark.parametrize(
    ("ar_ids", "lossy_ids", "agreed"),
    [
        ([1, 2, 3, 4], [1, 2, 3, 4], 4),  # equal: all of AR's tokens
        ([1, 2, 3, 4], [1, 2, 9, 4], 2),  # diverges at position 2
        ([1, 2, 3, 4], [9, 2, 3, 4], 0),
        ([1, 2, 3, 4], [1, 2], 2),  # a strict prefix of AR's answer: it stopped early
        ([1, 2], [1, 2, 3, 4], 2),  # extends AR's answer: only AR's tokens count
        ([1, 2, 3], [], 0),
        ([], [5, 6], 0),
    ],
)
def test_count_agreement_counts_tokens_before_the_first_divergence(ar_ids, lossy_ids, agreed):
    lossy = ids_record("layer-skip", lossy_ids)
    count_agreement(ids_record("ar", ar_ids), lossy)
    assert (lossy.agreed_tokens, lossy.compared_tokens) == (agreed, len(ar_ids))


def test_count_agreement_sums_over_turns():
    ar = ids_record("ar", [1, 2, 3, 4], [5, 6, 7], [8, 9])
    lossy = ids_record("layer-skip", [1, 2, 0, 4], [5, 6, 7, 8, 9], [8])
    count_agreement(ar, lossy)
    assert (lossy.agreed_tokens, lossy.compared_tokens) == (2 + 3 + 1, 4 + 3 + 2)


def leading_agreement(ar_ids, ids):
    return len(list(takewhile(lambda pair: pair[0] == pair[1], zip(ar_ids, ids))))


def test_bench_with_a_lossy_method_and_ar_in_another_dtype():
    backend = tiny_backend("llama", num_layers=4)
    other = tiny_backend("llama", seed=1, num_layers=4)  # stands in for the model loaded in fp32 once more
    questions = [Question(1, "mt_bench", ["Hello there", "And again"]), Question(2, "qa", ["What is 2+2?"])]
    settings = BenchSettings.parse(["ar", "layer-skip[exit_layer=2]", "ar@fp32"], max_new_tokens=8)
    records = run_bench(backend, questions, settings, variants={"fp32": other})
    assert [(r.question_id, r.method) for r in records] == [(q, m) for q in (1, 2)
                                                            for m in ("ar", "layer-skip[exit_layer=2]", "ar@fp32")]
    for question, (ar, skip, fp32) in zip(questions, (records[0:3], records[3:6])):
        assert len(ar.turns) == len(skip.turns) == len(fp32.turns) == len(question.turns)
        # AR and the lossy method are scored under the full model; AR's own row is never compared
        assert all(t.nll is not None and t.nll > 0 for t in ar.turns + skip.turns)
        assert (ar.identical_to_ar, ar.agreed_tokens, ar.compared_tokens) == (None, None, None)
        # the lossy method is not checked for divergence: it records how much of AR's answer it kept
        assert (skip.identical_to_ar, skip.divergence) == (None, None)
        assert skip.compared_tokens == sum(len(t.token_ids) for t in ar.turns)
        assert skip.agreed_tokens == sum(leading_agreement(a.token_ids, t.token_ids) for a, t in zip(ar.turns, skip.turns))
        # AR in another dtype is other numerics: neither checked against AR nor scored
        assert (fp32.identical_to_ar, fp32.divergence, fp32.agreed_tokens) == (None, None, None)
    # this stand-in model answers differently from AR, so a divergence check would have recorded one
    assert records[2].turns[0].token_ids != records[0].turns[0].token_ids
    # the lossy answer's nll is under the full model (the 4-layer one), not the 2-layer view that wrote it
    prompt = conversation_ids(backend, [{"role": "user", "content": "What is 2+2?"}])
    for record in records[3:5]:
        answer = record.turns[0].token_ids
        assert record.turns[0].nll == pytest.approx(reference_nll(backend, prompt, answer), rel=1e-4)


def test_a_row_on_another_model_form_gets_ar_on_that_form():
    settings = BenchSettings.parse(["copy-spec@q4_0", "llama-greedy@q4_0", "prompt-lookup", "ar@q8_0"])
    assert settings.labels == ["ar", "ar@q4_0", "copy-spec@q4_0", "llama-greedy@q4_0", "prompt-lookup", "ar@q8_0"]
    assert settings.variants == ["q4_0", "q8_0"]
    assert BenchSettings.parse(["copy-spec@q4_0[max_draft=4]"]).labels[1] == "ar@q4_0"


@pytest.mark.parametrize("entries, kind, message", [
    (["copy-spec@q4_0"], "hf", "'ar@q4_0': on the hf backend a row's @VARIANT is a torch dtype"),
    (["ar@fp32"], "llama.cpp", "'ar@fp32': on the llama.cpp backend a row's @VARIANT is a llama.cpp weight type"),
    (["hf-greedy@bf16"], "llama.cpp", "runs on the hf backend"),
])
def test_a_variant_the_backend_cannot_load_fails_before_loading(entries, kind, message):
    with pytest.raises(DecodekitError, match=re.escape(message)):
        BenchSettings.parse(entries).check_backend(kind)


@pytest.mark.parametrize("entry", ["copy-spec@q3", "nope@q4_0", "llama-greedy@q4_0[x=1]"])
def test_bad_variant_rows_are_named(entry):
    with pytest.raises(DecodekitError, match=re.escape(entry.split("@")[0] if "nope" in entry else entry)):
        BenchSettings.parse([entry])


def test_variant_rows_are_judged_against_ar_on_the_same_form():
    backend = tiny_backend("llama", num_layers=2)
    other = tiny_backend("llama", seed=1, num_layers=2)  # stands in for another weight type: other numerics
    questions = [Question(1, "qa", ["Say abcabcabc"]), Question(2, "qa", ["Count 1 2 3 1 2 3"])]
    settings = BenchSettings.parse(["prompt-lookup", "prompt-lookup@fp16"], max_new_tokens=12)
    records = run_bench(backend, questions, settings, variants={"fp16": other})
    by = {(r.question_id, r.method): r for r in records}
    assert {m for _, m in by} == {"ar", "ar@fp16", "prompt-lookup", "prompt-lookup@fp16"}
    for q in (1, 2):
        # each form's drafter reproduces AR on its own form...
        assert by[(q, "prompt-lookup")].identical_to_ar and by[(q, "prompt-lookup@fp16")].identical_to_ar
        assert by[(q, "prompt-lookup@fp16")].turns[0].token_ids == by[(q, "ar@fp16")].turns[0].token_ids
        assert by[(q, "ar@fp16")].identical_to_ar is None  # AR rows are references, never judged
    # ...and the two forms really answer differently, so judging across forms would have flagged them
    assert any(by[(q, "ar")].turns[0].token_ids != by[(q, "ar@fp16")].turns[0].token_ids for q in (1, 2))
