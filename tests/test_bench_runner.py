"""The benchmark measures what a user would get: drafters learn across questions, as in real
use, but never from the answer they are being timed on (no warm-up on a measured question, and
every repeat starts from the drafter state its turn started with)."""

from typing import ClassVar

import pytest
from test_timing import FakeClock, FakeDevice

from decodekit import drafters
from decodekit.bench.dataset import Question
from decodekit.bench.runner import WARM_UP_PROMPT, BenchSettings, run_bench
from decodekit.types import Draft


class LearningSpy:
    """A drafter that 'learns' every prompt it is reset with, and logs what it knew each time."""

    name = "spy"
    log: ClassVar[list[tuple[list[tuple[int, ...]], tuple[int, ...]]]] = []

    def __init__(self):
        self.learned: list[tuple[int, ...]] = []

    def reset(self, prompt_ids):
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
