"""Questions in Spec-Bench's format: {"question_id", "category", "turns": [...]} per line.

Spec-Bench's first 80 questions are MT-bench, in 8 sub-categories that Spec-Bench reports
together as one category, "multi-turn conversation"; here that is `mt_bench`, with the
original kept as `subcategory`. A sub-category can still be asked for by name
(`--categories writing`), since MT-bench's own results are often quoted per sub-category.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from decodekit.errors import DecodekitError

MT_BENCH = "mt_bench"
MT_BENCH_SUBCATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
SPEC_BENCH_CATEGORIES = (MT_BENCH, "translation", "summarization", "qa", "math_reasoning", "rag")
# Spec-Bench's questions ship inside the package (Apache-2.0; see data/spec_bench/README.md).
SPEC_BENCH = "spec-bench"
# So does the copy-heavy set: code editing, rewriting, multi-turn edits, summaries and answers
# from a document, where the answer repeats its input (data/copy_heavy/README.md).
COPY_HEAVY = "copy-heavy"
PACKAGED = {SPEC_BENCH: "spec_bench", COPY_HEAVY: "copy_heavy"}


@dataclass
class Question:
    question_id: int | str
    category: str
    turns: list[str]
    subcategory: str | None = None
    # Reference answers per turn where the dataset has them (Spec-Bench's math_reasoning:
    # GSM8K solutions ending in "#### N").
    reference: list[str] | None = None


def packaged_path(name: str = SPEC_BENCH) -> Path:
    """A packaged set's question.jsonl (`name` a key of PACKAGED): present wherever decodekit is installed."""
    return Path(str(resources.files("decodekit.bench") / "data" / PACKAGED[name] / "question.jsonl"))


def spec_bench_path() -> Path:
    """The packaged copy of Spec-Bench's question.jsonl."""
    return packaged_path(SPEC_BENCH)


def load_questions(source: str = SPEC_BENCH, categories: list[str] | None = None,
                   per_category: int | None = None) -> list[Question]:
    """Questions in file order; `categories` filters (categories or MT-bench sub-categories);
    `per_category` keeps the first N of each requested name (of each category when none is)."""
    if per_category is not None and per_category < 1:
        raise DecodekitError(f"questions per category must be >= 1, got {per_category}")
    path = packaged_path(source) if source in PACKAGED else Path(source)
    questions = read_questions(path)
    wanted = list(dict.fromkeys(c.strip() for c in categories or [] if c.strip()))
    if wanted:
        _check_known(wanted, questions, path)
    kept: list[Question] = []
    taken: dict[str, int] = {}
    for question in questions:
        key = _selection_key(question, wanted)
        if key is None or (per_category is not None and taken.get(key, 0) >= per_category):
            continue
        taken[key] = taken.get(key, 0) + 1
        kept.append(question)
    if not kept:  # every requested name exists, so this guards only against a broken file
        raise DecodekitError(f"no questions in {path} match the selection")
    return kept


def read_questions(path: Path) -> list[Question]:
    """Every question in a Spec-Bench-format JSONL file, validated line by line."""
    if not path.is_file():
        raise DecodekitError(f"dataset file not found: {path} (--dataset takes 'spec-bench', 'copy-heavy' or a JSONL file "
                             "with question_id, category and turns on each line)")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DecodekitError(f"cannot read the dataset file {path}: {error.strerror}") from None
    questions: list[Question] = []
    first_line: dict[int | str, int] = {}
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        question = _parse(line, path, number)
        if question.question_id in first_line:
            # results.jsonl identifies questions by id, so a repeated id would merge two questions.
            raise DecodekitError(f"{path.name} line {number}: question_id {question.question_id!r} "
                                 f"already used on line {first_line[question.question_id]}")
        first_line[question.question_id] = number
        questions.append(question)
    if not questions:
        raise DecodekitError(f"{path} holds no questions")
    return questions


def _parse(line: bytes, path: Path, number: int) -> Question:
    where = f"{path.name} line {number}"
    try:
        data = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise DecodekitError(f"{where} is not valid UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise DecodekitError(f"{where} is not valid JSON: {error.msg}") from None
    if not isinstance(data, dict):
        raise DecodekitError(f"{where} is not a JSON object")
    missing = [k for k in ("question_id", "category", "turns") if k not in data]
    if missing:
        raise DecodekitError(f"{where} lacks {', '.join(missing)}")
    question_id, category, turns = data["question_id"], data["category"], data["turns"]
    # bool is an int in Python, but never a sensible id.
    if isinstance(question_id, bool) or not isinstance(question_id, (int, str)):
        raise DecodekitError(f"{where}: 'question_id' must be an integer or a string")
    if not isinstance(category, str) or not category.strip():
        raise DecodekitError(f"{where}: 'category' must be a non-empty string")
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise DecodekitError(f"{where}: 'turns' must be a non-empty list of non-empty strings")
    reference = data.get("reference")
    if not (isinstance(reference, list) and all(isinstance(r, str) for r in reference)):
        reference = None  # other shapes (QA's lists of acceptable spans) are not graded
    if category in MT_BENCH_SUBCATEGORIES:
        return Question(question_id, MT_BENCH, turns, subcategory=category, reference=reference)
    return Question(question_id, category, turns, reference=reference)


def _check_known(wanted: list[str], questions: list[Question], path: Path) -> None:
    categories = list(dict.fromkeys(q.category for q in questions))
    subcategories = list(dict.fromkeys(q.subcategory for q in questions if q.subcategory))
    unknown = [c for c in wanted if c not in categories and c not in subcategories]
    if unknown:
        available = ", ".join(categories)
        if subcategories:
            available += f" (or {MT_BENCH}'s sub-categories: {', '.join(subcategories)})"
        raise DecodekitError(f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}: "
                             f"{path.name} has {available}")


def _selection_key(question: Question, wanted: list[str]) -> str | None:
    """The requested name a question counts under for per_category; None if not requested."""
    if not wanted:
        return question.category
    if question.subcategory in wanted:
        return question.subcategory
    if question.category in wanted:
        return question.category
    return None
