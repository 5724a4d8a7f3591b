"""Questions in Spec-Bench's format: {"question_id", "category", "turns": [...]} per line.

Spec-Bench's first 80 questions are MT-bench, in 8 sub-categories that Spec-Bench reports
together as one category, "multi-turn conversation"; here that is `mt_bench`, with the
original kept as `subcategory`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from decodekit.errors import DecodekitError

MT_BENCH_SUBCATEGORIES = {"writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"}
SPEC_BENCH_CATEGORIES = ["mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag"]
SPEC_BENCH_RELATIVE = Path("shared") / "data" / "spec_bench" / "question.jsonl"


@dataclass
class Question:
    question_id: int | str
    category: str
    turns: list[str]
    subcategory: str | None = None


def spec_bench_path() -> Path:
    """Spec-Bench's questions: $DECODEKIT_SPEC_BENCH, else ../shared/data beside the project."""
    if os.environ.get("DECODEKIT_SPEC_BENCH"):
        return Path(os.environ["DECODEKIT_SPEC_BENCH"])
    candidates = [Path.cwd().parent / SPEC_BENCH_RELATIVE, Path(__file__).resolve().parents[3] / SPEC_BENCH_RELATIVE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DecodekitError("Spec-Bench's question.jsonl was not found in ../shared/data/spec_bench/: "
                         "set DECODEKIT_SPEC_BENCH to its path, or pass --dataset FILE.jsonl")


def load_questions(source: str = "spec-bench", categories: list[str] | None = None,
                   per_category: int | None = None) -> list[Question]:
    if per_category is not None and per_category < 1:
        raise DecodekitError(f"questions per category must be >= 1, got {per_category}")
    path = spec_bench_path() if source == "spec-bench" else Path(source)
    if not path.is_file():
        raise DecodekitError(f"dataset file not found: {path}")
    questions = [_parse(line, path, number) for number, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    if not questions:
        raise DecodekitError(f"{path} holds no questions")
    available = list(dict.fromkeys(q.category for q in questions))
    if categories:
        unknown = [c for c in categories if c not in available]
        if unknown:
            raise DecodekitError(f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}: "
                                 f"{path.name} has {', '.join(available)}")
        questions = [q for q in questions if q.category in categories]
    if per_category is not None:
        taken: dict[str, int] = {}
        kept = []
        for q in questions:
            if taken.get(q.category, 0) < per_category:
                taken[q.category] = taken.get(q.category, 0) + 1
                kept.append(q)
        questions = kept
    return questions


def _parse(line: str, path: Path, number: int) -> Question:
    where = f"{path.name} line {number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise DecodekitError(f"{where} is not valid JSON: {error.msg}") from None
    if not isinstance(data, dict):
        raise DecodekitError(f"{where} is not a JSON object")
    missing = [k for k in ("question_id", "category", "turns") if k not in data]
    if missing:
        raise DecodekitError(f"{where} lacks {', '.join(missing)}")
    turns = data["turns"]
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise DecodekitError(f"{where}: 'turns' must be a non-empty list of non-empty strings")
    category = str(data["category"])
    if category in MT_BENCH_SUBCATEGORIES:
        return Question(data["question_id"], "mt_bench", turns, subcategory=category)
    return Question(data["question_id"], category, turns)
