"""The benchmark's unit of data: one record per (question, method), written to results.jsonl.

Everything the report shows is derived from these records, so they carry raw counts and times,
never precomputed ratios.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from decodekit.bench.witness import Witness


@dataclass
class TurnResult:
    """One generated answer (one turn of one question) by one method."""

    prompt_tokens: int
    new_tokens: int
    wall_s: float  # time from the call until the last token, prefill included
    token_ids: list[int]
    text: str
    # Verification steps and the histogram of tokens committed per step (accepted draft
    # tokens + the model's own token, so an AR step commits 1). None for baselines that
    # do not expose them (Hugging Face generate).
    steps: int | None = None
    accepted_hist: dict[int, int] | None = None
    drafted_tokens: int | None = None  # draft tokens verified (acceptance rate = accepted / drafted)
    # Negative log-likelihood of the new tokens under the full model (AR and lossy methods).
    nll: float | None = None
    # Where the time went (decodekit methods only).
    draft_s: float | None = None
    forward_s: float | None = None
    other_s: float | None = None
    # Time until the first tokens were out (the prompt's prefill and the first step), and how
    # many that first step committed; what remains of wall_s is decoding. None: not measured.
    prefill_s: float | None = None
    prefill_tokens: int | None = None
    # What the verifier saw at each committed position (greedy decodekit runs): for the judge,
    # kept in memory only, never written to results.jsonl.
    witness: Witness | None = field(default=None, repr=False, compare=False)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def decode_s(self) -> float | None:
        return None if self.prefill_s is None else max(0.0, self.wall_s - self.prefill_s)

    @property
    def decode_tokens(self) -> int | None:
        return None if self.prefill_tokens is None else self.new_tokens - self.prefill_tokens


@dataclass
class Divergence:
    """First position where a method's greedy output differs from AR's, in one turn."""

    turn: int
    position: int  # index into the generated tokens
    ar_token: int
    method_token: int
    # AR's logit for its own token minus its logit for the method's token at that position, on
    # AR's own row; None when one side has no token there, or the method's token is not among
    # AR's top tokens.
    logit_gap: float | None
    tolerance: float | None  # the bound on that gap (bench/divergence.py)
    is_bug: bool  # numerics cannot explain it: `note` says why
    rank: int | None = None  # the method token's rank under AR (0 is AR's own)
    drift: float | None = None  # how far the verifier's gaps from AR's top token moved from AR's own
    faithful: bool | None = None  # did the method commit what its verifier's logits dictated? None: not checked
    note: str = ""


@dataclass
class QuestionRecord:
    question_id: int | str
    category: str
    method: str
    backend: str  # "decodekit", or a baseline's library ("hf", "llama.cpp"): who ran the method
    turns: list[TurnResult] = field(default_factory=list)
    divergence: Divergence | None = None  # filled in by the losslessness check
    identical_to_ar: bool | None = None  # None for sampling runs and for AR itself
    # Lossy methods, greedy runs: tokens equal to AR's before each turn's first divergence,
    # and AR's tokens in those turns.
    agreed_tokens: int | None = None
    compared_tokens: int | None = None

    @property
    def new_tokens(self) -> int:
        return sum(t.new_tokens for t in self.turns)

    @property
    def wall_s(self) -> float:
        return sum(t.wall_s for t in self.turns)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Tokens after each turn's first step over the time they took; None unless every turn
        measured its prefill (or when nothing was decoded after it)."""
        if any(t.prefill_s is None for t in self.turns):
            return None
        seconds = sum(t.decode_s or 0.0 for t in self.turns)
        tokens = sum(t.decode_tokens or 0 for t in self.turns)
        return tokens / seconds if seconds > 0 and tokens > 0 else None

    def to_json(self) -> str:
        data = dataclasses.asdict(dataclasses.replace(self, turns=[dataclasses.replace(t, witness=None)
                                                                   for t in self.turns]))
        for turn in data["turns"]:
            del turn["witness"]
        return json.dumps(data)

    @classmethod
    def from_dict(cls, data: dict) -> QuestionRecord:
        turns = []
        for t in data["turns"]:
            t = dict(t)
            if t.get("accepted_hist") is not None:
                # JSON object keys are strings; the histogram is keyed by tokens per step.
                t["accepted_hist"] = {int(k): v for k, v in t["accepted_hist"].items()}
            turns.append(TurnResult(**t))
        div = data.get("divergence")
        return cls(
            question_id=data["question_id"],
            category=data["category"],
            method=data["method"],
            backend=data["backend"],
            turns=turns,
            divergence=Divergence(**div) if div else None,
            identical_to_ar=data.get("identical_to_ar"),
            agreed_tokens=data.get("agreed_tokens"),
            compared_tokens=data.get("compared_tokens"),
        )


def write_records(path: Path, records: list[QuestionRecord]) -> None:
    with open(path, "w") as f:
        for r in records:
            f.write(r.to_json() + "\n")


def read_records(path: Path) -> list[QuestionRecord]:
    with open(path) as f:
        return [QuestionRecord.from_dict(json.loads(line)) for line in f if line.strip()]
