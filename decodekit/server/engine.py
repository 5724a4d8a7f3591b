"""One loaded model, one worker thread, a bounded FIFO queue.

Requests wait their turn in the queue; the worker runs them one at a time through the library's
own streaming generator (`Decoder.stream_chunks`), and hands every chunk to the request's
handler on the event loop. Between steps it checks whether the client has left or the request
has run out of time, and closes the generator if so: the slot is free again within one step.

Why one at a time: on a CPU, two generations side by side share the same cores and each runs at
less than half speed, and the speedups decodekit measures are per-request. Batching requests
into one forward is a different design (and a different loop).
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

from decodekit.api import Chunk, Decoder
from decodekit.backend import Backend
from decodekit.errors import DecodekitError, Stopped
from decodekit.server.metrics import Metrics
from decodekit.server.protocol import ApiError
from decodekit.server.requests import DecodingChoice, GenerationRequest
from decodekit.server.responses import RequestStats
from decodekit.types import GenerationStats, StopReason

log = logging.getLogger("decodekit.server")

MAX_DECODERS = 8  # methods kept loaded besides the default (a drafter keeps what it learned)


@dataclass
class Event:
    """What the worker tells a request's handler: a chunk of choice `index`, the end of that
    choice, the end of the request (with its stats), or an error."""

    kind: Literal["chunk", "choice", "done", "error"]
    index: int = 0
    chunk: Chunk | None = None
    stop_reason: StopReason | None = None
    stats: RequestStats | None = None
    error: ApiError | None = None


class Job:
    """One request in the engine. Made on the event loop; the worker thread emits its events."""

    def __init__(self, request: GenerationRequest, timeout_s: float | None):
        self.request = request
        self.arrived = time.monotonic()
        self.deadline = None if timeout_s is None else self.arrived + timeout_s
        self.timeout_s = timeout_s
        self.cancelled = threading.Event()
        self.checked_at = self.arrived  # when the handler last asked whether its client is still there
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()

    def emit(self, event: Event) -> None:
        try:
            self._loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the event loop has closed: nobody is listening any more
            self.cancelled.set()

    def cancel(self) -> None:
        """The client has gone: stop at the next step, or skip the job if it has not started."""
        self.cancelled.set()

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def timeout_error(self) -> ApiError:
        return ApiError(504, f"the request ran past this server's time limit of {self.timeout_s:g} s (--timeout)",
                        kind="timeout_error")


class Engine:
    def __init__(self, backend: Backend, default: DecodingChoice, metrics: Metrics, max_queue: int = 32):
        self.backend, self.default, self.metrics, self.max_queue = backend, default, metrics, max_queue
        self._decoders: OrderedDict[tuple, Decoder] = OrderedDict()
        self._default_decoder = self._build(default)  # a default the model cannot run fails at startup
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._waiting = 0
        self._stopping = False
        self._seconds_per_job = 1.0  # a running mean, for Retry-After
        self._thread = threading.Thread(target=self._work, name="decodekit-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Refuse new work, cancel what waits, let the worker finish its step, and join it."""
        with self._lock:
            self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout_s)

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def stopping(self) -> bool:
        return self._stopping

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._stopping:
                raise ApiError(503, "the server is shutting down", kind="server_shutting_down")
            if self._waiting >= self.max_queue:
                retry = max(1, math.ceil(self._seconds_per_job * (self._waiting + 1)))
                raise ApiError(429, f"the queue is full ({self.max_queue} requests waiting, --max-queue): retry in "
                                    f"about {retry} s", kind="rate_limit_error", headers={"Retry-After": str(retry)})
            self._waiting += 1
            self.metrics.queue_depth.set(self._waiting)
        self._queue.put(job)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            self._serve(job)
            del job  # wait for the next one holding nothing of this one

    def _serve(self, job: Job) -> None:
        with self._lock:
            self._waiting -= 1
            self.metrics.queue_depth.set(self._waiting)
            stopping = self._stopping
        if stopping:
            job.emit(Event("error", error=ApiError(503, "the server is shutting down", kind="server_shutting_down")))
            return
        if job.cancelled.is_set():
            return
        started = time.monotonic()
        self.metrics.running.set(1)
        try:
            self._run(job)
        except DecodekitError as error:
            job.emit(Event("error", error=ApiError(400, str(error), "decoding")))
        except Exception as error:  # a bug: say so, keep serving
            log.exception("generation failed")
            job.emit(Event("error", error=ApiError(500, f"internal error: {type(error).__name__}: {error}",
                                                   kind="server_error")))
        finally:
            self.metrics.running.set(0)
            self._seconds_per_job = 0.8 * self._seconds_per_job + 0.2 * (time.monotonic() - started)

    def _run(self, job: Job) -> None:
        request = job.request
        stats = RequestStats(request.decoding.label(), len(request.prompt_ids), queued_s=time.monotonic() - job.arrived)
        if job.expired():
            job.emit(Event("error", error=job.timeout_error()))
            return
        decoder = self._decoder(request.decoding)
        for index in range(request.n):
            generation = GenerationStats()
            chunks = decoder.stream_chunks(prompt_ids=request.prompt_ids, stats=generation,
                                           should_stop=lambda: job.cancelled.is_set() or job.expired(),
                                           **request.options_for(index))
            try:
                for chunk in chunks:
                    if chunk.text and stats.first_token_s is None:
                        stats.first_token_s = time.monotonic() - job.arrived
                    stats.add_step(chunk)
                    job.emit(Event("chunk", index, chunk))
                    if job.cancelled.is_set():
                        self.metrics.cancelled.inc()
                        return
                    if job.expired():
                        job.emit(Event("error", error=job.timeout_error()))
                        return
            except Stopped:  # a search, told to stop midway by should_stop
                if not job.cancelled.is_set():
                    job.emit(Event("error", error=job.timeout_error()))
                return
            finally:
                chunks.close()  # frees the KV cache now, not at the next garbage collection
            stats.add_choice(generation)
            job.emit(Event("choice", index, stop_reason=generation.stop_reason))
        self.metrics.record_generation(stats)
        job.emit(Event("done", stats=stats))

    def _decoder(self, choice: DecodingChoice) -> Decoder:
        if choice == self.default:
            return self._default_decoder
        key = choice.key()
        if key in self._decoders:
            self._decoders.move_to_end(key)
        else:
            self._decoders[key] = self._build(choice)
            if len(self._decoders) > MAX_DECODERS:
                self._decoders.popitem(last=False)
        return self._decoders[key]

    def _build(self, choice: DecodingChoice) -> Decoder:
        options: dict[str, Any] = dict(choice.options)
        return Decoder(self.backend, choice.method, drafter=choice.drafter, **options)
