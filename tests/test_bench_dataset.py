"""Loading questions: Spec-Bench's own file and crafted good and bad files."""

import importlib
import inspect
import json
import re
import sys
from collections import Counter

import pytest

from decodekit.bench import dataset
from decodekit.bench.dataset import MT_BENCH_SUBCATEGORIES, SPEC_BENCH_CATEGORIES, load_questions
from decodekit.errors import DecodekitError

ROWS = [
    {"question_id": 1, "category": "writing", "turns": ["a", "b"]},
    {"question_id": 2, "category": "coding", "turns": ["c", "d"]},
    {"question_id": 3, "category": "qa", "turns": ["e"], "reference": ["ignored"]},
    {"question_id": "q4", "category": "qa", "turns": ["f"]},
    {"question_id": 5, "category": "writing", "turns": ["g", "h"]},
    {"question_id": 6, "category": "translation", "turns": ["i"]},
]


def write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


@pytest.fixture()
def small(tmp_path):
    return write_jsonl(tmp_path / "q.jsonl", ROWS)


def ids(questions):
    return [q.question_id for q in questions]


def test_groups_mt_bench_and_keeps_the_subcategory(small):
    questions = load_questions(small)
    assert [(q.question_id, q.category, q.subcategory) for q in questions] == [
        (1, "mt_bench", "writing"), (2, "mt_bench", "coding"), (3, "qa", None), ("q4", "qa", None),
        (5, "mt_bench", "writing"), (6, "translation", None)]
    assert questions[0].turns == ["a", "b"]


def test_per_category_keeps_the_first_n_in_file_order(small):
    assert ids(load_questions(small, per_category=1)) == [1, 3, 6]
    assert ids(load_questions(small, per_category=2)) == [1, 2, 3, "q4", 6]
    assert ids(load_questions(small, per_category=100)) == [1, 2, 3, "q4", 5, 6]


def test_categories_filter_keeps_file_order(small):
    assert ids(load_questions(small, categories=["translation", "qa"])) == [3, "q4", 6]
    assert ids(load_questions(small, categories=["mt_bench"], per_category=2)) == [1, 2]
    assert ids(load_questions(small, categories=["qa", "qa", " "])) == [3, "q4"]  # repeats and blanks ignored


def test_a_subcategory_can_be_selected_and_counts_on_its_own(small):
    questions = load_questions(small, categories=["writing", "qa"], per_category=1)
    assert ids(questions) == [1, 3]
    assert questions[0].category == "mt_bench"  # reported under Spec-Bench's category still


def test_blank_lines_are_skipped(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", ["", json.dumps(ROWS[2]), "   ", json.dumps(ROWS[5])])
    assert ids(load_questions(path)) == [3, 6]


@pytest.mark.parametrize(
    "rows, kwargs, message",
    [
        ([ROWS[0], "{not json"], {}, "line 2 is not valid JSON"),
        (["[1, 2]"], {}, "line 1 is not a JSON object"),
        ([{"question_id": 1, "turns": ["a"]}], {}, "line 1 lacks category"),
        ([{"category": "qa"}], {}, "lacks question_id, turns"),
        ([{"question_id": 1, "category": "qa", "turns": []}], {}, "'turns' must be a non-empty list"),
        ([{"question_id": 1, "category": "qa", "turns": "a"}], {}, "'turns' must be a non-empty list"),
        ([{"question_id": 1, "category": "qa", "turns": ["a", ""]}], {}, "non-empty strings"),
        ([{"question_id": 1, "category": "qa", "turns": ["a", 3]}], {}, "non-empty strings"),
        ([{"question_id": 1, "category": None, "turns": ["a"]}], {}, "'category' must be a non-empty string"),
        ([{"question_id": [1], "category": "qa", "turns": ["a"]}], {}, "'question_id' must be"),
        ([{"question_id": True, "category": "qa", "turns": ["a"]}], {}, "'question_id' must be"),
        ([ROWS[2], ROWS[3], dict(ROWS[5], question_id=3)], {}, "line 3: question_id 3 already used on line 1"),
        (ROWS, {"categories": ["poetry"]}, "unknown category poetry: q.jsonl has mt_bench, qa, translation"),
        (ROWS, {"categories": ["poetry", "qa", "prose"]}, "unknown categories poetry, prose"),
        (ROWS, {"categories": ["poetry"]}, "sub-categories: writing, coding"),
        (ROWS, {"per_category": 0}, ">= 1"),
        (ROWS, {"per_category": -3}, ">= 1"),
        ([], {}, "holds no questions"),
        (["", "  "], {}, "holds no questions"),
    ],
)
def test_bad_input_is_a_clear_decodekit_error(tmp_path, rows, kwargs, message):
    path = write_jsonl(tmp_path / "q.jsonl", rows)
    with pytest.raises(DecodekitError, match=re.escape(message)):
        load_questions(path, **kwargs)


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_bytes(json.dumps(ROWS[2]).encode() + b"\n" + b'{"question_id": 1, "category": "\xff"}\n')
    with pytest.raises(DecodekitError, match="line 2 is not valid UTF-8"):
        load_questions(str(path))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DecodekitError, match="dataset file not found"):
        load_questions(str(tmp_path / "nope.jsonl"))
    with pytest.raises(DecodekitError, match="dataset file not found"):
        load_questions(str(tmp_path))


def test_spec_bench_ships_with_the_package_and_its_license():
    path = dataset.spec_bench_path()
    assert path.is_file() and path.parent.joinpath("LICENSE").read_text().startswith("Apache License")
    assert "Spec-Bench" in path.parent.joinpath("README.md").read_text()


def test_the_packaged_spec_bench_file():
    questions = load_questions("spec-bench")
    assert len(questions) == 480
    assert Counter(q.category for q in questions) == {c: 80 for c in SPEC_BENCH_CATEGORIES}
    assert list(dict.fromkeys(q.category for q in questions)) == list(SPEC_BENCH_CATEGORIES)  # file order
    mt_bench = [q for q in questions if q.category == "mt_bench"]
    assert questions[:80] == mt_bench
    assert Counter(q.subcategory for q in mt_bench) == {s: 10 for s in MT_BENCH_SUBCATEGORIES}
    assert all(len(q.turns) == 2 for q in mt_bench)
    assert all(len(q.turns) == 1 and q.subcategory is None for q in questions[80:])
    assert len({q.question_id for q in questions}) == 480

    sample = load_questions("spec-bench", categories=["translation", "rag"], per_category=3)
    assert [q.category for q in sample] == ["translation"] * 3 + ["rag"] * 3
    assert [q.question_id for q in sample[:3]] == [q.question_id for q in questions if q.category == "translation"][:3]


def test_the_copy_heavy_set_ships_with_its_licenses():
    questions = load_questions(dataset.COPY_HEAVY)
    assert Counter(q.category for q in questions) == {c: 10 for c in
                                                       ("code_editing", "multi_turn", "rewriting", "summarization",
                                                        "rag")}
    assert all(len(q.turns) == (2 if q.category == "multi_turn" else 1) for q in questions)
    folder = dataset.packaged_path(dataset.COPY_HEAVY).parent
    assert "Python Software Foundation" in (folder / "LICENSE-PSF.txt").read_text()
    assert "Apache License" in (folder / "LICENSE-Apache-2.0.txt").read_text()
    assert (folder / "README.md").is_file()
    # Its summarization and rag questions are Spec-Bench's own, unchanged.
    spec_bench = {q.turns[0] for q in load_questions(categories=["summarization", "rag"])}
    assert all(q.turns[0] in spec_bench for q in questions if q.category in ("summarization", "rag"))


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the set quotes CPython 3.11's standard library")
def test_the_copy_heavy_code_questions_quote_the_functions_they_name():
    rows = [json.loads(line) for line in dataset.packaged_path(dataset.COPY_HEAVY).read_text().splitlines()]
    for row in rows:
        if row["category"] in ("code_editing", "multi_turn"):
            module, _, name = row["source"].rpartition(".")
            try:
                obj = getattr(importlib.import_module(module), name)
            except ImportError:  # a method: module.Class.method
                module, _, owner = module.rpartition(".")
                obj = getattr(getattr(importlib.import_module(module), owner), name)
            body = inspect.getsource(obj).strip().splitlines()[-1].strip()
            assert body in row["turns"][0], row["question_id"]
