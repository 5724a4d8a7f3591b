import json

from tiny import tiny_backend

from decodekit.calibrate import curve_path, load_or_measure, measure_curve


def test_measure_curve_is_relative_to_one_token():
    points = measure_curve(tiny_backend("llama"), context=32, repeats=2, sizes=(1, 2, 8))
    assert set(points) == {1, 2, 8} and points[1] == 1.0
    assert all(v > 0 for v in points.values())


def test_curve_is_cached_per_model_and_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("DECODEKIT_HOME", str(tmp_path))
    backend = tiny_backend("qwen2")
    first = load_or_measure(backend)
    path = curve_path(backend)
    assert path.is_file() and path.parent == tmp_path / "latency"
    stored = json.loads(path.read_text())["relative_cost"]
    stored["2"] = 9.0
    path.write_text(json.dumps({"relative_cost": stored}))
    assert load_or_measure(backend)(2) == 9.0  # read back, not measured again
    path.write_text("{broken")
    assert load_or_measure(backend).prior.keys() == first.prior.keys()  # damaged: measured again
