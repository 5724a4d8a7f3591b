"""dtype="auto" / quant="auto": the form is chosen by measurement, held to the reference's
quality, cached per machine, and reported. The choice rule is tested on made-up speeds, so no
assertion depends on which CPU runs the tests; one test measures for real on a tiny model."""

import json

import pytest
from tiny import save_tiny_model
from typer.testing import CliRunner

import decodekit.models.auto_form as auto_form
from decodekit import Decoder
from decodekit.cli import app
from decodekit.models.auto_form import MAX_PERPLEXITY_RISE, timing_method
from decodekit.models.backends import load_model
from decodekit.paths import home


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return str(save_tiny_model(tmp_path_factory.mktemp("tiny")))


def fake_measures(monkeypatch, speeds: dict[str, float], perplexities: dict[str, float]):
    """Made-up speeds and perplexities by dtype; counts how often each form is measured."""
    measured = []

    def speed(model, method):
        measured.append(model.dtype_name)
        return speeds[model.dtype_name]

    monkeypatch.setattr(auto_form, "_sample_speed", speed)
    monkeypatch.setattr("decodekit.bench.forms.perplexity", lambda model: perplexities[model.dtype_name])
    return measured


def test_the_fastest_form_is_chosen_and_its_measurements_are_kept(folder, monkeypatch):
    fake_measures(monkeypatch, {"fp32": 10.0, "bf16": 25.0}, {"fp32": 8.0, "bf16": 8.1})
    model = load_model(folder, "hf", dtype="auto")
    choice = model.form_choice
    assert (choice.form, model.dtype_name, choice.reference) == ("bf16", "bf16", "fp32")
    assert [(m.form, m.tokens_per_s, m.excluded) for m in choice.measures] == [("fp32", 10.0, ""), ("bf16", 25.0, "")]
    assert choice.perplexity_rise() == pytest.approx(8.1 / 8.0 - 1)
    line = choice.describe()
    assert line.startswith("form bf16 (bf16 arithmetic; perplexity 8.10, +1.2% against fp32): 25.0 tok/s")
    assert "fp32 10.0" in line and "(measured now)" in line


def test_a_form_that_loses_too_much_quality_is_not_chosen_however_fast(folder, monkeypatch):
    rise = 1 + MAX_PERPLEXITY_RISE + 0.01
    fake_measures(monkeypatch, {"fp32": 10.0, "bf16": 40.0}, {"fp32": 8.0, "bf16": 8.0 * rise})
    choice = load_model(folder, "hf", dtype="auto").form_choice
    assert choice.form == "fp32"
    assert choice.measure("bf16").excluded.startswith(f"perplexity {8.0 * rise:.2f}, over 25% above fp32")
    assert "bf16 40.0 (perplexity" in choice.describe()


def test_the_reference_wins_when_it_is_fastest(folder, monkeypatch):
    fake_measures(monkeypatch, {"fp32": 30.0, "bf16": 20.0}, {"fp32": 8.0, "bf16": 8.0})
    choice = load_model(folder, "hf", dtype="auto").form_choice
    assert choice.form == "fp32" and choice.perplexity_rise() == 0
    assert "perplexity 8.00)" in choice.describe()  # no rise to report against itself


def test_the_choice_is_cached_per_method_and_a_damaged_entry_is_measured_again(folder, monkeypatch):
    measured = fake_measures(monkeypatch, {"fp32": 10.0, "bf16": 25.0}, {"fp32": 8.0, "bf16": 8.0})
    load_model(folder, "hf", dtype="auto", timed_with="prompt-lookup")
    assert measured == ["fp32", "bf16"]
    again = load_model(folder, "hf", dtype="auto", timed_with="prompt-lookup")
    assert measured == ["fp32", "bf16"]  # nothing measured: read from the cache
    assert again.dtype_name == "bf16" and again.form_choice.cached and "(cached measurement)" in again.form_choice.describe()
    load_model(folder, "hf", dtype="auto", timed_with="ar")  # another method is timed afresh
    assert measured == ["fp32", "bf16"] * 2
    for entry in (home() / "forms").glob("*.json"):
        entry.write_text("{not json")
    load_model(folder, "hf", dtype="auto", timed_with="ar")
    assert measured == ["fp32", "bf16"] * 3


def test_a_real_measurement_on_a_tiny_model_picks_the_faster_form(folder):
    choice = load_model(folder, "hf", dtype="auto").form_choice
    assert {m.form for m in choice.measures} == {"fp32", "bf16"}
    assert all(m.tokens_per_s > 0 and m.perplexity > 1 for m in choice.measures)
    fastest = max(choice.measures, key=lambda m: m.tokens_per_s)
    allowed = [m for m in choice.measures if not m.excluded]
    assert choice.form == (fastest if not fastest.excluded else max(allowed, key=lambda m: m.tokens_per_s)).form


def test_decoding_on_the_chosen_form_is_lossless_against_ar_on_that_form(folder, monkeypatch):
    fake_measures(monkeypatch, {"fp32": 10.0, "bf16": 25.0}, {"fp32": 8.0, "bf16": 8.0})
    fast = Decoder(folder, "prompt-lookup", dtype="auto")
    plain = Decoder(load_model(folder, "hf", dtype="bf16"), "ar")
    assert fast.form_choice.form == "bf16" and fast.backend.dtype_name == "bf16"
    prompt = "abc abc abc abc abc"
    assert fast.generate(prompt, max_new_tokens=24).token_ids == plain.generate(prompt, max_new_tokens=24).token_ids


@pytest.mark.parametrize("method, options, drafter, timed", [
    ("prompt-lookup", {"max_draft": 8}, None, "prompt-lookup[max_draft=8]"),
    ("copy-spec+token-recycling", {}, None, "copy-spec+token-recycling"),
    ("ar", {}, None, "ar"),
    ("mirostat", {"tau": 3.0}, "copy-spec", "copy-spec"),  # a strategy is timed with its drafter
    ("dola", {}, None, "ar"),
    ("beam", {"num_beams": 4}, None, "ar"),  # a search
    ("draft-model", {"draft": "x"}, None, "ar"),  # a second model is not part of the target's form
    ("auto", {}, None, "copy-spec"),
])
def test_the_method_a_form_is_timed_with(method, options, drafter, timed):
    assert timing_method(method, options, drafter) == timed


def test_generate_reports_the_choice_on_stderr_and_in_json(folder, monkeypatch):
    fake_measures(monkeypatch, {"fp32": 10.0, "bf16": 25.0}, {"fp32": 8.0, "bf16": 8.2})
    result = CliRunner().invoke(app, ["generate", "abc abc", "-m", folder, "--raw", "--json", "-n", "4"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["form"]["form"] == "bf16" and out["form"]["method"] == "prompt-lookup"
    assert [m["form"] for m in out["form"]["measures"]] == ["fp32", "bf16"]
    assert out["form"]["perplexity_rise"] == pytest.approx(0.025)
    assert "form bf16" in result.stderr
    explicit = json.loads(CliRunner().invoke(app, ["generate", "abc", "-m", folder, "--raw", "--json", "-n", "4",
                                                   "--dtype", "fp32"]).stdout)
    assert "form" not in explicit  # an explicit dtype wins, and nothing is measured
