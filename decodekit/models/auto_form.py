"""`dtype="auto"` and `quant="auto"`: load the model in the form that decodes fastest here.

Which form is fastest is a property of the machine, not of the model: on a 2-core AMD EPYC
the zoo's Q4_1 SmolLM2 has no batched kernel and spends 58% of a copy-heavy answer in the
prefill, while a Q4_0 copy of it prefills 3× faster and verifies 16 tokens for 3.8 one-token
steps instead of 7.4 (docs/cpu-speed.md). A CPU with AMX ranks bf16 differently again. So the
form is chosen by measuring, never by a table:

- candidates: on llama.cpp the file's own weight type plus the types with batched CPU kernels
  (`CANDIDATE_QUANTS`, re-quantised once from the file); on transformers fp32 and bf16;
- each candidate decodes the same small packaged sample (a code edit and a question over a
  document, from the copy-heavy set) with the method that will run, prefill included, and
  scores the perplexity of a fixed text (bench/forms.py);
- a candidate whose perplexity is more than `MAX_PERPLEXITY_RISE` above the reference form's
  (the file's own type; fp32) cannot be chosen; the fastest of the rest is;
- the choice is cached per model, method and machine under $DECODEKIT_HOME/forms/, so only
  the first load measures (about a minute for a small model).

The draft budget is not part of the choice: every method sizes it at each step from the
chosen form's measured cost curve (budget.py).
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from decodekit.backend import Backend
from decodekit.paths import home

AUTO = "auto"
CANDIDATE_QUANTS = ("q4_0", "q8_0", "bf16")  # repacked or wide types: batched kernels on x86 CPUs
CANDIDATE_DTYPES = ("fp32", "bf16")
MAX_PERPLEXITY_RISE = 0.25  # Q4_1 -> Q4_0 costs SmolLM2-135M +19%, Qwen2.5-Coder-1.5B (Q4_K_M) +8%
SAMPLE_CATEGORIES = ("code_editing", "rag")
SAMPLE_TOKENS = 64
FORMAT = 1  # bump when what is measured changes, so old cached choices are measured again

Progress = Callable[[str], None]


@dataclass
class FormMeasure:
    form: str  # a llama.cpp weight type ("q4_0") or a torch dtype ("bf16")
    tokens_per_s: float  # on the sample, prefill included
    perplexity: float  # of bench/forms.py's fixed text
    quality: str  # what the form is, for a reader
    excluded: str = ""  # why it could not be chosen, if it could not


@dataclass
class FormChoice:
    form: str
    method: str  # the method the candidates were timed with
    reference: str  # the form whose perplexity the others are held to
    measures: list[FormMeasure] = field(default_factory=list)
    cached: bool = False  # read from an earlier measurement on this machine

    def measure(self, form: str) -> FormMeasure:
        return next(m for m in self.measures if m.form == form)

    def perplexity_rise(self) -> float:
        return self.measure(self.form).perplexity / self.measure(self.reference).perplexity - 1

    def describe(self) -> str:
        """One line for stderr: what was chosen, what it costs in quality, what it beat."""
        chosen = self.measure(self.form)
        quality = (f"perplexity {chosen.perplexity:.2f}, {self.perplexity_rise():+.1%} against {self.reference}"
                   if self.form != self.reference else f"perplexity {chosen.perplexity:.2f}")
        others = ", ".join(f"{m.form} {m.tokens_per_s:.1f}" + (f" ({m.excluded})" if m.excluded else "")
                           for m in sorted(self.measures, key=lambda m: -m.tokens_per_s) if m.form != self.form)
        where = "cached measurement" if self.cached else "measured now"
        return (f"form {self.form} ({chosen.quality}; {quality}): {chosen.tokens_per_s:.1f} tok/s with {self.method} "
                f"on the sample, against {others or 'no other candidate'} ({where})")

    def as_dict(self) -> dict:
        return {**asdict(self), "perplexity_rise": self.perplexity_rise()}


def is_auto(backend: str, dtype: str, quant: str | None) -> bool:
    return (backend == "llama.cpp" and quant == AUTO) or (backend == "hf" and dtype == AUTO)


def timing_method(method: str, options: dict | None = None, drafter: str | None = None) -> str:
    """The method an automatic form is timed with: the drafting that will run (a strategy's
    drafter), or plain decoding for a search, a lossy method or drafting with a second model;
    method "auto" is timed with copy-spec, the candidate that won most often in docs/cpu-speed.md."""
    from decodekit.drafters import LOSSY, takes_draft
    from decodekit.methods import MethodSpec, spec_text
    from decodekit.search import SEARCHES
    from decodekit.strategies import STRATEGIES

    if method in SEARCHES or method in LOSSY:
        return "ar"
    if method == "auto":
        return "copy-spec"
    timed = (drafter or "ar") if method in STRATEGIES else spec_text(MethodSpec(method, method, dict(options or {})))
    return "ar" if any(takes_draft(part.split("[")[0]) for part in timed.split("+")) else timed


def load_auto(spec: str, backend: str, method: str = "ar", threads: int | None = None, device: str | None = None,
              progress: Progress | None = None) -> tuple[Backend, FormChoice]:
    """The model in its fastest form on this machine, and the measurements that chose it.
    `method`: a drafting method that needs no second model ("copy-spec[max_draft=32]", "ar")."""
    from decodekit.machine import cpu_model
    from decodekit.version import __version__

    say = progress or (lambda _message: None)
    key = json.dumps([FORMAT, spec, _source_stamp(spec), backend, method, threads, device, cpu_model(), __version__])
    path = home() / "forms" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    cached = _read(path)
    if cached is not None:
        say(f"loading {spec} as {cached.form} (chosen by an earlier measurement)")
        own = cached.form == cached.reference  # the file's own type loads as it is, not re-quantised
        return _load(spec, backend, None if own else cached.form, threads, device), cached
    choice, chosen = _measure(spec, backend, method, threads, device, say)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(asdict(choice), indent=1))
    partial.replace(path)  # atomic: a second process never reads half a file
    return chosen, choice


def _measure(spec: str, backend: str, method: str, threads: int | None, device: str | None,
             say: Progress) -> tuple[FormChoice, Backend]:
    from decodekit.bench.forms import perplexity, quality_class

    first = _load(spec, backend, None, threads, device)  # the file's own type; fp32
    reference = _form_name(first)
    loaded: Backend | None = first
    source_type = getattr(first, "weight_type", None)
    del first  # `loaded` holds it until its turn, then only `best` may
    others = CANDIDATE_QUANTS if backend == "llama.cpp" else CANDIDATE_DTYPES
    candidates = [reference] + [form for form in others if form != reference]
    choice = FormChoice("", method, reference)
    best: tuple[float, Backend | None] = (-1.0, None)
    for number, form in enumerate(candidates, 1):
        say(f"choosing the fastest form of {spec}: measuring {form} ({number}/{len(candidates)})")
        model = loaded or _load(spec, backend, form, threads, device)
        loaded = None
        kind = getattr(model, "weight_type", None)
        quality = (quality_class(kind, source_type) if kind and source_type
                   else "full precision" if form == "fp32" else f"{form} arithmetic")
        measure = FormMeasure(form, _sample_speed(model, method), perplexity(model), quality)
        ceiling = choice.measures[0].perplexity * (1 + MAX_PERPLEXITY_RISE) if choice.measures else math.inf
        if measure.perplexity > ceiling:
            measure.excluded = f"perplexity {measure.perplexity:.2f}, over {MAX_PERPLEXITY_RISE:.0%} above {reference}"
        choice.measures.append(measure)
        if not measure.excluded and measure.tokens_per_s > best[0]:
            choice.form, best = form, (measure.tokens_per_s, model)
        del model
        gc.collect()  # only the fastest so far stays loaded: two 1.5B fp32 copies would crowd the RAM
    assert best[1] is not None  # the reference form is never excluded
    return choice, best[1]


def _sample_speed(model: Backend, method: str) -> float:
    """Tokens/s over the sample prompts, prefill included, after one untimed warm-up."""
    from decodekit.auto import run_once
    from decodekit.bench.dataset import COPY_HEAVY, load_questions
    from decodekit.drafters import make_drafter
    from decodekit.methods import parse_method
    from decodekit.prompts import conversation_ids, user_turn
    from decodekit.sampling import SamplingConfig

    spec = parse_method(method)
    drafter = make_drafter(spec.name, **spec.options)
    room = model.context_length - SAMPLE_TOKENS - 1
    prompts = [conversation_ids(model, user_turn(q.turns[0]))[-room:]
               for q in load_questions(COPY_HEAVY, categories=list(SAMPLE_CATEGORIES), per_category=1)]
    run_once(model, drafter, prompts[0][:32], 8, SamplingConfig())
    tokens, seconds = 0, 0.0
    for ids in prompts:
        stats = run_once(model, drafter, ids, SAMPLE_TOKENS, SamplingConfig())
        tokens, seconds = tokens + stats.new_tokens, seconds + stats.wall_s
    return tokens / seconds if seconds > 0 else math.inf


def _load(spec: str, backend: str, form: str | None, threads: int | None, device: str | None) -> Backend:
    """`form` None: the file's own weight type on llama.cpp, fp32 on transformers."""
    from decodekit.models.backends import load_model

    if backend == "llama.cpp":
        return load_model(spec, backend, quant=form, threads=threads)
    return load_model(spec, backend, dtype=form or "fp32", threads=threads, device=device)


def _form_name(model: Backend) -> str:
    kind = getattr(model, "weight_type", None)
    return kind.lower() if kind else model.dtype_name


def _source_stamp(spec: str) -> str:
    """A local file or folder's size and time, so a changed model is measured again."""
    path = Path(spec).expanduser()
    if not path.exists():
        return ""
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _read(path: Path) -> FormChoice | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        measures = [FormMeasure(**m) for m in data.pop("measures")]
        return FormChoice(**{**data, "cached": True}, measures=measures)
    except (ValueError, TypeError, KeyError):
        path.unlink(missing_ok=True)  # a damaged entry is measured again
        return None
