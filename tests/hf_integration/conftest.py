"""Fixtures for tests that talk to the in-memory Hub of `tests/hub_server.py`.

Environment. `huggingface_hub` copies `HF_ENDPOINT`, `HF_HOME`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE`,
`HF_HUB_DISABLE_XET`, ... into `huggingface_hub.constants` when it is first imported, and later
changes to `os.environ` are ignored. So `start_session_hub()` must run before the first import
of `huggingface_hub` or `transformers` in the pytest process. This conftest calls it at import
time, which is enough for `pytest tests/hf_integration`; when the whole `tests/` tree is
collected, pytest imports `tests/conversion/*` (which imports `transformers`) before this file, so
`tests/conftest.py` must call `tests.support.hub_server.start_session_hub()` at its top,
too. If it ran
too late, every test using the `hub` fixture fails with an explanation (other tests still run).

Isolation. Each test starts with no repos, an empty request log, an empty `HF_HUB_CACHE` (the
directory's contents are deleted: the path itself is frozen in the constants) and no `HF_TOKEN`
/ `HUGGING_FACE_HUB_TOKEN` in the environment. `HF_HOME` is a temporary directory, so no stored
token is ever found: calls without an explicit token are anonymous.

Offline mode. Setting `HF_HUB_OFFLINE=1` in `os.environ` during a test has no effect. What
works is patching the constant, `monkeypatch.setattr(huggingface_hub.constants,
"HF_HUB_OFFLINE", True)`, which the `go_offline` fixture does: `huggingface_hub.is_offline_mode()`
reads it on every request (and `transformers` calls that same function), so from then on
requests raise `OfflineModeIsEnabled` before reaching the network, cached files still load, and
uncached ones raise `LocalEntryNotFoundError` (`OSError` from `transformers.from_pretrained`).
"""

from collections.abc import Callable, Iterator

import pytest

from tests.support.hub_server import HubServer, clear_session_cache, start_session_hub

try:
    _HUB: HubServer | None = start_session_hub()
    _TOO_LATE = ""
except RuntimeError as error:
    _HUB, _TOO_LATE = None, str(error)

import huggingface_hub  # noqa: E402  (must come after start_session_hub)


@pytest.fixture(scope="session")
def hub() -> HubServer:
    """The session's `HubServer`; `huggingface_hub` already points at it."""
    if _HUB is None:
        pytest.fail(_TOO_LATE, pytrace=False)
    return _HUB


@pytest.fixture(autouse=True)
def _fresh_hub(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No repos, no requests, no cached files, no token from the environment."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    hub.reset()
    clear_session_cache()
    yield
    hub.reset()


@pytest.fixture
def token() -> str:
    """A token the test Hub accepts for writes (any bearer token is accepted)."""
    return "hf_test_token_not_a_secret"


@pytest.fixture
def hf_api(hub: HubServer, token: str) -> huggingface_hub.HfApi:
    """An authenticated `HfApi` client for the test Hub."""
    return huggingface_hub.HfApi(endpoint=hub.endpoint, token=token)


@pytest.fixture
def go_offline(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it to switch `huggingface_hub` (and `transformers`) to offline mode for this test."""

    def switch() -> None:
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    return switch
