"""The request line of production (api/observability.py ``RequestLines``): one JSON object a
line on stderr, the keys and order structlog's JSONRenderer wrote, whatever the path holds,
and whole lines when threads log at once."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator

import falcon
import falcon.testing
import pytest
import structlog

from api import observability
from api.observability import ObservabilityMiddleware, configure_logging

KEYS = ["method", "path", "route", "status", "duration_ms", "request_id", "event", "level"]


class Echo:
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.media = {"name": name}


@pytest.fixture
def client() -> Iterator[falcon.testing.TestClient]:
    configure_logging(json_lines=True)
    app = falcon.App(middleware=[ObservabilityMiddleware()])
    app.add_route("/v1/echo/{name}", Echo())
    try:
        yield falcon.testing.TestClient(app)
    finally:
        observability._request_lines = None
        structlog.reset_defaults()


def lines(err: str) -> list[dict[str, object]]:
    parsed = [json.loads(line) for line in err.splitlines()]
    assert all(isinstance(p, dict) for p in parsed)
    return parsed


@pytest.mark.parametrize(
    "path",
    ["/v1/echo/plain", "/v1/echo/%E4%B8%AD%E6%96%87", "/v1/echo/%ED%A0%80", "/v1/echo/a%22b%5Cc"],
    ids=["ascii", "chinese", "lone-surrogate-bytes", "quote-and-backslash"],
)
def test_a_request_writes_one_json_line_with_structlogs_keys_in_its_order(
    client: falcon.testing.TestClient, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    capsys.readouterr()
    client.simulate_get(path, headers={"X-Request-Id": "req-1"})
    (line,) = lines(capsys.readouterr().err)
    assert list(line) == [*KEYS, "timestamp"]
    assert line["method"] == "GET" and line["status"] == 200 and line["request_id"] == "req-1"
    assert line["event"] == "request" and line["level"] == "info"
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert str(line["timestamp"]).endswith("Z") and "+00:00" not in str(line["timestamp"])
    assert str(line["path"]).startswith("/v1/echo/")


def test_a_path_msgspec_cannot_encode_is_written_escaped_not_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lone surrogate reaches the logger only from code (the server decodes paths), but the
    line must still be written, escaped as json.dumps escapes it."""
    writer = observability.RequestLines()
    captured: list[bytes] = []

    class Buffer:
        def write(self, data: bytes) -> None:
            captured.append(data)

        def flush(self) -> None:
            pass

    class Stream:
        buffer = Buffer()

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stderr", Stream())
    writer.write({"method": "GET", "path": "/v1/\udc80", "status": 400})
    (data,) = captured
    assert data.endswith(b"\n") and b"\\udc80" in data
    assert json.loads(data)["path"] == "/v1/\udc80"


def test_lines_stay_whole_when_threads_log_at_once(
    client: falcon.testing.TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()

    def hammer(n: int) -> None:
        for i in range(100):
            client.simulate_get(f"/v1/echo/t{n}-{i}")

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    written = lines(capsys.readouterr().err)
    assert sorted(str(line["path"]) for line in written) == sorted(
        f"/v1/echo/t{n}-{i}" for n in range(8) for i in range(100)
    )
