"""CopySpec (Dumitru et al., 2025, "CopySpec: Accelerating LLMs with Speculative Copy-and-Paste
Without Compromising Quality") and input-guided copying (Aggressive Decoding's IAD, Sun et al.,
2021).

The last γ tokens are looked up in an index of every γ-gram seen so far (prompt and output,
across turns); among the earlier occurrences the one whose match extends furthest back — the
longest repeated span — wins, ties going to the most recent, and what followed it is copied as
the draft. The index is a rolling hash updated as tokens arrive, so a lookup costs the same on a
10-token and on a 10,000-token conversation, unlike a scan.

With `source="prompt"` only the input is copied from (IAD for edit tasks: rewriting,
correction, translation with overlap); after a mismatch the next lookup re-aligns on the input.
"""

from __future__ import annotations

from collections import defaultdict

from decodekit.budget import AcceptanceEstimate, Budget
from decodekit.errors import DecodekitError
from decodekit.types import Draft, VerifyResult

BASE = 1_000_003
MASK = (1 << 61) - 1


class GramIndex:
    """Positions of every γ-gram in a growing token list, keyed by a rolling hash.

    >>> index = GramIndex(2); index.extend([1, 2, 3, 1, 2])
    >>> index.occurrences([1, 2])
    [2, 5]

    (An occurrence is reported by the position just after it.)
    """

    def __init__(self, gamma: int):
        self.gamma = gamma
        self.tokens: list[int] = []
        self.ends: dict[int, list[int]] = defaultdict(list)
        self._power = pow(BASE, gamma - 1, MASK)
        self._hash = 0

    def extend(self, tokens: list[int]) -> None:
        for token in tokens:
            self.tokens.append(token)
            if len(self.tokens) > self.gamma:
                leaving = self.tokens[-self.gamma - 1]
                self._hash = (self._hash - (leaving + 1) * self._power) % MASK
            self._hash = (self._hash * BASE + token + 1) % MASK
            if len(self.tokens) >= self.gamma:
                self.ends[self._hash].append(len(self.tokens))

    def occurrences(self, gram: list[int]) -> list[int]:
        h = 0
        for token in gram:
            h = (h * BASE + token + 1) % MASK
        # A hash collision is possible in principle: confirm each hit against the tokens.
        return [end for end in self.ends.get(h, []) if self.tokens[end - self.gamma : end] == gram]


def longest_span(tokens: list[int], ends: list[int], limit: int) -> tuple[int, int] | None:
    """Among candidate occurrence ends (earlier than the current end), the one whose match with
    the current suffix extends furthest back, as (end, match length); ties go to the most recent.
    None if no candidate.

    >>> longest_span([7, 1, 2, 9, 1, 2, 5, 9, 1, 2], [3, 6], 10)
    (6, 3)
    """
    current = len(tokens)
    best, best_length = None, -1
    for end in ends:
        if end >= current:
            continue
        length = 0
        while length < limit and end - length - 1 >= 0 and tokens[end - length - 1] == tokens[current - length - 1]:
            length += 1
        if length >= best_length:
            best, best_length = end, length
    return None if best is None else (best, best_length)


def span_bucket(length: int) -> int:
    """Matches are grouped by length for their acceptance estimates: a 12-token repeat predicts
    its continuation far better than a 3-token one.

    >>> [span_bucket(n) for n in (3, 5, 8, 20)]
    [0, 1, 2, 3]
    """
    return 0 if length <= 3 else 1 if length <= 5 else 2 if length <= 11 else 3


class CopySpecDrafter:
    name = "copy-spec"

    def __init__(self, gamma: int = 3, max_draft: int = 16, source: str = "all", adaptive: bool = True):
        if gamma < 1:
            raise DecodekitError(f"copy-spec needs gamma >= 1, got {gamma}")
        if max_draft < 1:
            raise DecodekitError(f"copy-spec max_draft must be >= 1, got {max_draft}")
        if source not in ("all", "prompt"):
            raise DecodekitError(f"copy-spec source must be 'all' or 'prompt', got '{source}'")
        self.gamma, self.max_draft, self.source, self.adaptive = gamma, max_draft, source, adaptive
        self.estimates = [AcceptanceEstimate() for _ in range(4)]  # by span_bucket of the match
        self._bucket = 0
        self.index = GramIndex(gamma)
        self._prompt_len = 0

    def reset(self, prompt_ids: list[int], sampling: object = None, rng: object = None) -> None:
        self.index = GramIndex(self.gamma)
        self.index.extend(prompt_ids)
        self._prompt_len = len(prompt_ids)

    def propose(self, history: list[int], budget: Budget) -> Draft:
        if len(history) > len(self.index.tokens) and self.source == "all":
            self.index.extend(history[len(self.index.tokens) :])
        limit = min(self.max_draft, budget.max_tokens)
        if limit < 1 or len(history) < self.gamma:
            return Draft.empty()
        ends = self.index.occurrences(history[-self.gamma :])
        if self.source == "prompt":
            ends = [e for e in ends if e < self._prompt_len]
        found = longest_span(history, ends, limit=256)
        if found is None:
            return Draft.empty()
        end, length = found
        self._bucket = span_bucket(length)
        tokens = history[end : end + limit]
        if self.adaptive:
            tokens = self.estimates[self._bucket].trim(tokens, budget.cost)
        return Draft(tokens=tokens)

    def observe(self, draft: Draft, result: VerifyResult, target_logits) -> None:
        if len(draft):
            self.estimates[self._bucket].update(result.num_accepted, len(draft))
