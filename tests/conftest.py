import pytest
import torch


@pytest.fixture(autouse=True)
def isolated_cache(request, tmp_path_factory, monkeypatch):
    """Tests write models and latency curves to a scratch DECODEKIT_HOME; the real-model tests
    (marked slow) use the real one, so the default model is pulled once per machine."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("DECODEKIT_HOME", str(tmp_path_factory.mktemp("decodekit-home")))


@pytest.fixture(autouse=True)
def one_thread_for_tiny_models(request):
    """Tiny models run fastest on one thread: with two, OpenMP's thread hand-offs cost more than
    the arithmetic. Real-model tests (marked slow) keep torch's setting."""
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
