"""Incremental detokenisation and stop strings.

Decoding token by token breaks multi-byte characters (an emoji is often several byte-level
tokens) and some tokenizers change a token's text depending on its neighbours. So text is
re-decoded over a short window and only released once it no longer ends in an incomplete
character (U+FFFD); stop strings are held back until they can no longer start in the
unreleased tail.
"""

from __future__ import annotations

from collections.abc import Callable

from decodekit.errors import DecodekitError

REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """Turns a growing list of token ids into text chunks that are never broken UTF-8."""

    def __init__(self, decode: Callable[[list[int]], str]):
        self.decode = decode  # ids -> text, e.g. Backend.decode
        self.ids: list[int] = []
        self.prefix_start = 0  # window start: decoding from here gives stable context
        self.read_end = 0  # ids up to here have been released as text

    def push(self, tokens: list[int]) -> str:
        """Add tokens; return the newly completed text (possibly empty)."""
        self.ids.extend(tokens)
        released = self.decode(self.ids[self.prefix_start : self.read_end])
        full = self.decode(self.ids[self.prefix_start :])
        if full.endswith(REPLACEMENT) or len(full) < len(released):
            return ""  # an incomplete character: wait for its remaining bytes
        self.prefix_start, self.read_end = self.read_end, len(self.ids)
        return full[len(released) :]

    def flush(self) -> str:
        """Release whatever is left (at the end of generation), even a broken character."""
        released = self.decode(self.ids[self.prefix_start : self.read_end])
        full = self.decode(self.ids[self.prefix_start :])
        self.prefix_start = self.read_end = len(self.ids)
        return full[len(released) :]


class StopStringFilter:
    """Holds back text that might be the start of a stop string; cuts at the first stop."""

    def __init__(self, stop: list[str]):
        if any(not s for s in stop):
            raise DecodekitError("stop strings must be non-empty")
        self.stop = stop
        self.held = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """Return the text safe to emit; after a stop string, nothing more."""
        if self.stopped:
            return ""
        self.held += text
        hits = [i for i in (self.held.find(s) for s in self.stop) if i >= 0]
        if hits:
            self.stopped = True
            out, self.held = self.held[: min(hits)], ""
            return out
        keep = self._partial_suffix()
        out = self.held[: len(self.held) - keep]
        self.held = self.held[len(self.held) - keep :]
        return out

    def flush(self) -> str:
        out, self.held = ("" if self.stopped else self.held), ""
        return out

    def _partial_suffix(self) -> int:
        """Length of the longest tail of `held` that is a proper prefix of some stop string."""
        best = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.held)), best, -1):
                if self.held.endswith(s[:k]):
                    best = k
                    break
        return best
