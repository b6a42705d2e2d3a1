"""Every wait is bounded by wall-clock time, whatever one try costs: the health wait
runs as one module execution, with each request cut to what is left of the wait."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from support.core_sandbox import run_module


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: every request costs its full timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/health"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def test_a_health_wait_ends_at_its_timeout_although_each_request_would_take_longer(silent_server):
    began = time.monotonic()
    result = run_module("health_endpoint", {"url": silent_server, "timeout": 3, "delay": 1, "request_timeout": 5})
    elapsed = time.monotonic() - began

    assert result["failed"] and not result["healthy"]
    assert "did not answer 200 within 3s" in result["msg"]
    assert result["elapsed"] < 3.5, result  # the wait itself, inside the module
    assert elapsed < 3 + 6, "ansible's own start-up aside, nothing waited longer"


def test_a_health_wait_retries_until_the_endpoint_answers(tmp_path):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answers = iter([503, 503, 200])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = next(answers, 200)
            body = json.dumps({"version": "1.2.0"}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = run_module("health_endpoint", {
            "url": f"http://127.0.0.1:{server.server_port}/health", "timeout": 10, "delay": 0.2})
    finally:
        server.shutdown()

    assert result["healthy"] and result["status"] == 200 and result["attempts"] == 3
    assert result["json"] == {"version": "1.2.0"}
