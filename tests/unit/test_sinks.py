"""storm.sinks: the file sink (JSON lines, flushed before the ack, rotation),
the stdout sink, and the webhook sink against a real HTTP server on 127.0.0.1
that fails the first attempts (every record arrives, nothing is acked before
its POST succeeded, a batch that keeps failing fails its tuples)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from storm.sinks import FileSink, StdoutSink, WebhookSink
from storm.testing import make_tick_tuple, make_tuple, run_bolt

pytestmark = pytest.mark.timeout(30)


def alert(i: int) -> Any:
    return make_tuple([f"id{i}", {"id": f"id{i}", "state": "firing", "message": f"alert {i}"}],
                      fields=["id", "alert"])


def test_file_sink_writes_json_lines_and_acks_each(tmp_path: Path) -> None:
    path = tmp_path / "out" / "alerts-{task}.jsonl"
    run = run_bolt(FileSink, [alert(i) for i in range(3)] + [make_tuple(["x", 1], fields=["k", "v"])],
                   conf={"sinks.file.path": str(path)})
    run.raise_for_errors()
    (out,) = (tmp_path / "out").iterdir()
    assert out.name == f"alerts-{run.instance.task}.jsonl"
    written = out.read_text().splitlines()
    assert [json.loads(line) for line in written] == [
        {"id": "id0", "message": "alert 0", "state": "firing"},
        {"id": "id1", "message": "alert 1", "state": "firing"},
        {"id": "id2", "message": "alert 2", "state": "firing"},
        {"k": "x", "v": 1},
    ]
    assert len(run.acked) == 4 and not run.unacked


def test_file_sink_rotates_by_size(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    run = run_bolt(FileSink, [alert(i) for i in range(10)],
                   conf={"sinks.file.path": str(path), "sinks.file.max.bytes": 150, "sinks.file.backups": 2})
    run.raise_for_errors()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["a.jsonl", "a.jsonl.1", "a.jsonl.2"]
    lines = [json.loads(x)["id"] for name in ("a.jsonl.2", "a.jsonl.1", "a.jsonl")
             for x in (tmp_path / name).read_text().splitlines()]
    assert lines == [f"id{i}" for i in range(10)][-len(lines):], "oldest rotated away, order kept"
    assert all((tmp_path / n).stat().st_size <= 150 for n in files)


def test_file_sink_fails_the_tuple_when_the_write_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "dir"
    blocker.mkdir()
    run = run_bolt(FileSink, [alert(0)], conf={"sinks.file.path": str(blocker)})  # a directory
    assert len(run.failed) == 1 and not run.acked
    assert run.errors and "Errno" in run.errors[0].error


def test_stdout_sink_prints_state_and_message(capsys: pytest.CaptureFixture[str]) -> None:
    run = run_bolt(StdoutSink, [alert(1)])
    run.raise_for_errors()
    assert "[FIRING] alert 1" in capsys.readouterr().out
    assert len(run.acked) == 1


@dataclass
class Hook:
    """A local HTTP server that answers 503 to the first `fail_first` POSTs."""

    fail_first: int = 0
    status: int = 503
    bodies: list[Any] = field(default_factory=list)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.attempts += 1
                fail = state.attempts <= state.fail_first
                if not fail:
                    state.bodies.append(json.loads(body))
            self.send_response(state.status if fail else 200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def webhook_conf(url: str, **more: Any) -> dict[str, Any]:
    return {"sinks.webhook.url": url, "sinks.webhook.batch.size": 2, "sinks.webhook.backoff.secs": 0.01,
            "sinks.webhook.linger.secs": 0.0, **more}


def test_webhook_retries_until_the_server_accepts(hook: Hook) -> None:
    hook.fail_first = 3
    tuples = [alert(i) for i in range(5)] + [make_tick_tuple(0.1)]
    run = run_bolt(WebhookSink, tuples, conf=webhook_conf(hook.url))
    run.raise_for_errors()
    received = sorted(r["id"] for body in hook.bodies for r in body)
    assert received == [f"id{i}" for i in range(5)], "every record arrived once the server recovered"
    assert len(run.acked) == 5 and not run.failed
    assert hook.attempts >= 3 + 3  # 3 refused + one good POST per batch of 2 (3 batches)
    assert run.instance.attempts == hook.attempts


def test_webhook_fails_tuples_after_the_last_retry(hook: Hook) -> None:
    hook.fail_first = 1000
    run = run_bolt(WebhookSink, [alert(0), alert(1)], conf=webhook_conf(hook.url, **{"sinks.webhook.retries": 2}))
    assert len(run.failed) == 2 and not run.acked
    assert hook.attempts == 3
    assert "failed after 3 attempts: HTTP 503" in run.errors[0].error


def test_webhook_does_not_retry_a_client_error(hook: Hook) -> None:
    hook.fail_first, hook.status = 1000, 400
    run = run_bolt(WebhookSink, [alert(0), alert(1)], conf=webhook_conf(hook.url))
    assert len(run.failed) == 2 and hook.attempts == 1


def test_webhook_connection_refused_is_retried_then_failed() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    run = run_bolt(WebhookSink, [alert(0), alert(1)],
                   conf=webhook_conf(f"http://127.0.0.1:{port}/", **{"sinks.webhook.retries": 1}))
    assert len(run.failed) == 2
    assert run.instance.attempts == 2


def test_webhook_sink_without_url_fails_at_prepare() -> None:
    with pytest.raises(ValueError, match="sinks.webhook.url"):
        run_bolt(WebhookSink, [])
