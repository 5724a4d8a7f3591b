"""Build decodekit's copy-heavy benchmark set (decodekit/bench/data/copy_heavy/question.jsonl).

The work where speculation pays most on a CPU is the work whose answer repeats its input:
editing code, rewriting text, answering from a document. This script makes 50 questions in
Spec-Bench's format, 10 per category:

- code_editing: a function from CPython's standard library and an edit to make to it
  (type hints, a renamed parameter, comments, logging, turning it into a method);
- multi_turn: a standard-library function to explain, then to return with type hints added;
- rewriting: a standard-library module's docstring to rewrite in one mechanical way
  (British spelling, Markdown, a quote block, one sentence per line, proofreading);
- summarization and rag: Spec-Bench's first 10 questions of each, unchanged.

The standard-library text is under the PSF License (copied beside the output); Spec-Bench's
under Apache-2.0. The sources are read from the running interpreter, so the output depends on
its version: run it with CPython 3.11 (the shipped file was made with 3.11.7), from the
repository root:

    python3 tools/make_copy_heavy.py
"""

from __future__ import annotations

import importlib
import inspect
import json
import shutil
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "decodekit" / "bench" / "data" / "copy_heavy"
SPEC_BENCH = REPO / "decodekit" / "bench" / "data" / "spec_bench"

EDITED = ["textwrap.indent", "shlex.quote", "fnmatch.filter", "colorsys.rgb_to_hls", "statistics.median",
          "statistics.mode", "glob.escape", "string.capwords", "html.escape", "urllib.parse.quote_from_bytes"]
EXPLAINED = ["shutil.copyfileobj", "gettext.c2py", "textwrap.shorten", "email.utils.parseaddr", "secrets.token_hex",
             "dataclasses.astuple", "inspect.cleandoc", "calendar.monthrange", "colorsys.rgb_to_hsv",
             "random.Random.shuffle"]
REWRITTEN = ["heapq", "sched", "unittest", "doctest", "tempfile", "uuid", "timeit", "copy", "plistlib", "inspect"]

EDITS = [
    "Add type hints to this function and extend its docstring to describe each argument. Keep the logic exactly "
    "as it is and return the whole function.",
    "Rename the parameter `{param}` to `{param}_in` everywhere in this function, changing nothing else, and return "
    "the whole function.",
    "Add a short comment above each statement block of this function saying what it does. Do not change the code; "
    "return the whole function.",
    "Make this function log its arguments with `logging.getLogger(__name__).debug(...)` when it is called; keep "
    "everything else identical and return the whole function.",
    "Turn this function into a method of a class named `{cls}` (add `self` as the first parameter). Keep the body "
    "unchanged and return the whole class.",
]
REWRITES = [
    "Rewrite the following text with British English spelling. Change nothing else and return the whole text.",
    "Proofread the following documentation and return it in full, with any mistakes corrected.",
    "Reformat the following documentation as Markdown: keep every sentence as it is and put code in backticks.",
    "Return the following text as a Markdown quote (every line starting with '> '), otherwise unchanged.",
    "Rewrite the following text with each sentence on a line of its own, keeping the wording exactly.",
]


def find(dotted: str) -> object:
    """The object a dotted name points to: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def first_parameter(function) -> str:
    names = [p for p in inspect.signature(function).parameters if p != "self"]
    return names[0]


def class_name(dotted: str) -> str:
    return "".join(part.capitalize() for part in dotted.rsplit(".", 1)[-1].split("_")) + "Tool"


def code_block(source: str) -> str:
    return f"```python\n{inspect.cleandoc(source) if source.startswith(' ') else source.rstrip()}\n```"


def questions() -> list[dict]:
    made = []
    for i, dotted in enumerate(EDITED):
        function = find(dotted)
        edit = EDITS[i % len(EDITS)].format(param=first_parameter(function), cls=class_name(dotted))
        prompt = f"Here is `{dotted}` from Python's standard library:\n\n{code_block(inspect.getsource(function))}\n\n{edit}"
        made.append({"question_id": f"code-{i + 1}", "category": "code_editing", "turns": [prompt], "source": dotted})
    for i, dotted in enumerate(EXPLAINED):
        function = find(dotted)
        first = (f"Here is `{dotted}` from Python's standard library:\n\n{code_block(inspect.getsource(function))}"
                 "\n\nExplain in two or three sentences what it does.")
        second = "Now return the whole function with type hints added, changing nothing else."
        made.append({"question_id": f"turns-{i + 1}", "category": "multi_turn", "turns": [first, second],
                     "source": dotted})
    for i, module in enumerate(REWRITTEN):
        text = inspect.getdoc(importlib.import_module(module))
        prompt = f"{REWRITES[i % len(REWRITES)]}\n\n{text}"
        made.append({"question_id": f"rewrite-{i + 1}", "category": "rewriting", "turns": [prompt],
                     "source": f"{module} (module docstring)"})
    spec_bench = [json.loads(line) for line in (SPEC_BENCH / "question.jsonl").read_text().splitlines() if line]
    for category in ("summarization", "rag"):
        for q in [q for q in spec_bench if q["category"] == category][:10]:
            made.append({"question_id": f"{category}-{q['question_id']}", "category": category, "turns": q["turns"],
                         "source": f"Spec-Bench question {q['question_id']}"})
    return made


def main() -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"run with CPython 3.11: the shipped file quotes its standard library (this is {sys.version})")
    OUT.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(q, ensure_ascii=False) for q in questions()]
    (OUT / "question.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copy(Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt", OUT / "LICENSE-PSF.txt")
    shutil.copy(SPEC_BENCH / "LICENSE", OUT / "LICENSE-Apache-2.0.txt")
    print(f"wrote {len(lines)} questions to {OUT / 'question.jsonl'}")


if __name__ == "__main__":
    main()
