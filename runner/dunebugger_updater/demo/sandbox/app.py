"""Stand-in for the DuneBugger core application.

``python app.py --port N`` serves ``GET /health`` on 127.0.0.1 with
``{"status": "ok", "version": <VERSION of the release this file lives in>}``.
A ``HEALTH`` file beside this script changes the behaviour, so test releases can
be built broken on purpose: ``fail`` makes /health answer 500, ``crash`` makes
the process exit with status 3 before it listens, ``exit-after N`` makes it answer
for N seconds and then exit with status 3.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# resolve(): through the core symlink this is the release's own directory, so a
# process started before a switch keeps reporting the version it runs.
HERE = Path(__file__).resolve().parent
CRASH_EXIT_STATUS = 3


def read_version(directory: Path) -> str:
    """Return the version from ``VERSION`` (JSON object or one plain line)."""
    try:
        text = (directory / "VERSION").read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown"
    if text.startswith("{"):
        try:
            return str(json.loads(text).get("version", "unknown"))
        except ValueError:
            return "unknown"
    return text.splitlines()[0].strip() if text else "unknown"


def read_health_mode(directory: Path) -> str:
    try:
        return (directory / "HEALTH").read_text(encoding="utf-8").strip().lower()
    except OSError:
        return "ok"


def make_handler(version: str, healthy: bool) -> type[BaseHTTPRequestHandler]:
    class HealthHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/health":
                self._reply(404, {"status": "not found"})
            elif healthy:
                self._reply(200, {"status": "ok", "version": version})
            else:
                self._reply(500, {"status": "fail", "version": version})

        def _reply(self, status: int, body: dict) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, fmt: str, *args: object) -> None:
            sys.stderr.write("%s\n" % (fmt % args))

    return HealthHandler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)

    mode = read_health_mode(HERE)
    version = read_version(HERE)
    if mode == "crash":
        sys.stderr.write(f"core {version}: crashing at start on purpose\n")
        return CRASH_EXIT_STATUS
    server = ThreadingHTTPServer((args.host, args.port), make_handler(version, mode != "fail"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if mode.startswith("exit-after "):  # healthy, then gone: a release that dies soon after its start
        threading.Timer(float(mode.split()[1]), os._exit, args=(CRASH_EXIT_STATUS,)).start()
    sys.stderr.write(f"core {version} listening on {args.host}:{args.port}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
