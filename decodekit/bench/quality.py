"""What `decodekit bench-quality` measures of a text, and how its rows are written.

- rep-n: the share of an output's word n-grams that repeat an earlier n-gram of the same output
  (1 − unique / total; Welleck et al., 2020, as contrastive search's paper reports it);
- distinct-n: unique word n-grams over all n-grams, across all of a row's outputs (Li et al., 2016);
- accuracy: for GSM8K-style references ("... #### 42"), whether the output's last number is it.

A row is a method with its options and its sampling settings in one spec, e.g.
`ar[temperature=1.0,top_p=0.95]`, `dola[dola_layers=low]`, `mirostat[temperature=1.0,tau=3.0]`:
keys that are sampling settings go to generation, `drafter` to the drafter, the rest to the method.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from decodekit.errors import DecodekitError
from decodekit.methods import MethodSpec
from decodekit.settings import SAMPLING_FIELDS

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def rep_n(text: str, n: int) -> float:
    """1 − unique/total word n-grams of one text (0 for a text shorter than n words).

    >>> rep_n("a b a b a b", 2)
    0.6
    """
    grams = ngrams(text.split(), n)
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def distinct_n(texts: list[str], n: int) -> float:
    """Unique word n-grams over all word n-grams, across `texts`.

    >>> distinct_n(["a b c", "a b d"], 2)
    0.75
    """
    grams = [gram for text in texts for gram in ngrams(text.split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def reference_answer(reference: str) -> str | None:
    """The final answer of a GSM8K solution, after its "####".

    >>> reference_answer("... so 3+2 = 5\\n#### 5")
    '5'
    """
    if "####" not in reference:
        return None
    return _normalise(reference.rsplit("####", 1)[1].strip())


def final_number(text: str) -> str | None:
    """The last number in a text, as written without thousands separators.

    >>> final_number("It costs $1,000.00 in total, or 2 trips.")
    '2'
    """
    numbers = _NUMBER.findall(text)
    return _normalise(numbers[-1]) if numbers else None


def is_correct(output: str, reference: str) -> bool | None:
    """Whether the output's last number is the reference's answer; None without one."""
    expected = reference_answer(reference)
    return None if expected is None else final_number(output) == expected


def _normalise(number: str) -> str:
    number = number.replace(",", "").replace("$", "").strip().rstrip(".")
    if re.fullmatch(r"-?\d+\.0*", number):
        number = number.split(".")[0]
    return number


@dataclass(frozen=True)
class QualityRow:
    label: str  # as written
    method: str
    method_options: dict = field(default_factory=dict)
    sampling: dict = field(default_factory=dict)
    drafter: str | None = None
    samples: int = 1  # independent samples per question (seeds seed, seed + 1, ...): k drafts the plain way

    @classmethod
    def from_spec(cls, spec: MethodSpec) -> QualityRow:
        options = dict(spec.options)
        sampling = {key: options.pop(key) for key in list(options) if key in SAMPLING_FIELDS}
        drafter = options.pop("drafter", None)
        samples = options.pop("samples", 1)
        return cls(spec.label, spec.name, options, sampling, drafter, samples)


def check_row(row: QualityRow) -> None:
    """A bad method, option or sampling setting fails before any model loads."""
    from decodekit.api import check_decoding
    from decodekit.sampling import SamplingConfig
    from decodekit.strategies.mirostat import check_mirostat_sampling

    check_decoding(row.method, row.method_options, row.drafter)
    sampling = SamplingConfig(**row.sampling)
    if not (isinstance(row.samples, int) and not isinstance(row.samples, bool) and row.samples >= 1):
        raise DecodekitError(f"row '{row.label}': samples must be an integer >= 1, got {row.samples!r}")
    if row.samples > 1 and sampling.greedy:
        raise DecodekitError(f"row '{row.label}': samples={row.samples} needs sampling (temperature > 0): greedy "
                             "samples are all the same")
    if row.method == "mirostat":
        check_mirostat_sampling(sampling)
