"""Timings wait for the device before reading the clock. On a GPU a forward returns when its
kernels are queued, not when they finish; without a synchronize the loop and the calibration
would time kernel launches, and the cost curve every draft budget follows would be flat noise.

A fake device makes this exact and independent of the machine: its forwards only queue work,
its clock advances only when `synchronize()` waits for that work."""

import time
from typing import ClassVar

import pytest
import torch

from decodekit.budget import LatencyCurve
from decodekit.calibrate import measure_curve
from decodekit.drafters import NoDrafter
from decodekit.loop import decode
from decodekit.sampling import SamplingConfig
from decodekit.types import Draft
from decodekit.verify import SeededRandomness

VOCAB = 16


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ListCache:
    def __init__(self):
        self.tokens: list[int] = []

    def __len__(self):
        return len(self.tokens)

    def crop(self, length):
        del self.tokens[length:]

    def keep(self, start, offsets):
        appended = self.tokens[start:]
        self.tokens[start:] = [appended[o] for o in offsets]


class FakeDevice:
    """A backend whose forward over n tokens queues `seconds(n)` of device work. The model
    always predicts the previous token + 1, so greedy output is easy to check."""

    name = identity = "fake-device"
    dtype_name = "fp32"
    context_length = 4096
    vocab_size = VOCAB
    eos_token_ids: ClassVar[set[int]] = set()
    has_chat_template = False

    def __init__(self, clock: FakeClock, seconds=lambda n: 0.010 + 0.002 * n, launch_s: float = 0.0001):
        self.clock, self.seconds, self.launch_s = clock, seconds, launch_s
        self.queued = 0.0
        self.latency = LatencyCurve()

    def new_cache(self):
        return ListCache()

    def forward(self, pending, draft, cache):
        tokens = pending + draft.tokens
        cache.tokens.extend(tokens)
        self.clock.now += self.launch_s  # the host only pays for the launch
        self.queued += self.seconds(len(tokens))
        last = [pending[-1], *draft.tokens]
        return torch.nn.functional.one_hot(torch.tensor([(t + 1) % VOCAB for t in last]), VOCAB).float()

    def synchronize(self):
        self.clock.now += self.queued
        self.queued = 0.0

    def encode(self, text):
        return [ord(c) % VOCAB for c in text]

    def decode(self, ids):
        return "".join(chr(97 + i) for i in ids)

    def apply_chat_template(self, messages):
        raise AssertionError("not used")


@pytest.fixture()
def clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(time, "perf_counter", clock)
    return clock


def test_loop_times_the_forward_with_its_device_work(clock):
    device = FakeDevice(clock)
    steps = list(decode(device, [1, 2, 3], NoDrafter(), SamplingConfig(), SeededRandomness(0), 5))
    assert [t for s in steps for t in s.tokens] == [4, 5, 6, 7, 8]
    # Step 0 is the prefill (3 tokens), then one token per step: the device work, not the launch.
    assert steps[0].forward_s == pytest.approx(device.launch_s + device.seconds(3))
    assert all(s.forward_s == pytest.approx(device.launch_s + device.seconds(1)) for s in steps[1:])
    assert all(s.draft_s == pytest.approx(0.0) for s in steps)  # no device work leaks into drafting
    # The online cost curve learned from these forwards saw the device time too.
    assert device.latency._seconds[1] == pytest.approx(device.launch_s + device.seconds(1))


def test_unsynchronised_timing_would_see_only_the_launch(clock):
    """The control: the same fake device read without synchronize gives launch times only,
    so the test above fails if the loop stops synchronising."""
    device = FakeDevice(clock)
    start = time.perf_counter()
    device.forward([1], Draft.empty(), device.new_cache())
    assert time.perf_counter() - start == pytest.approx(device.launch_s)


def test_calibration_measures_device_time(clock):
    device = FakeDevice(clock, seconds=lambda n: 0.01 * n)
    points = measure_curve(device, context=32, repeats=2, sizes=(1, 2, 8))
    # cost(n) / cost(1) with a 0.1 ms launch on top of 10 ms per token
    expected = {n: (0.0001 + 0.01 * n) / (0.0001 + 0.01) for n in (1, 2, 8)}
    assert points == pytest.approx(expected)
