import pytest


@pytest.fixture(autouse=True)
def isolated_cache(request, tmp_path_factory, monkeypatch):
    """Tests write models and latency curves to a scratch DECODEKIT_HOME; the real-model tests
    (marked slow) use the real one, so the default model is pulled once per machine."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("DECODEKIT_HOME", str(tmp_path_factory.mktemp("decodekit-home")))
