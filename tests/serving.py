"""A decodekit server on loopback for the tests: uvicorn in a thread, on a free port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn

from decodekit.server import DecodingChoice, ServerLimits, create_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(backend, model_name: str = "tiny", method: str = "prompt-lookup", *, max_tokens: int = 64,
            default_max_tokens: int = 16, limits: dict | None = None, **options) -> Iterator[str]:
    """Serve `backend` until the block ends; yields the base URL (http://127.0.0.1:PORT).
    `limits`: more ServerLimits fields (draft=, beams=, ...)."""
    app = create_app(backend, model_name, DecodingChoice.parse(method),
                     limits=ServerLimits(max_tokens=max_tokens, default_max_tokens=default_max_tokens,
                                         **(limits or {})), **options)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


class SlowBackend:
    """A backend whose every forward takes `delay` seconds longer, and which counts its forwards:
    long enough generations to test queueing, cancelling and timeouts on a tiny model."""

    def __init__(self, inner, delay: float):
        self.inner, self.delay, self.forwards = inner, delay, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def forward(self, *args, **kwargs):
        self.forwards += 1
        time.sleep(self.delay)
        return self.inner.forward(*args, **kwargs)

    def forward_rows(self, *args, **kwargs):  # a search's steps
        time.sleep(self.delay)
        return self.inner.forward_rows(*args, **kwargs)
