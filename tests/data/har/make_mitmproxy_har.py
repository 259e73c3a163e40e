#!/usr/bin/env python3
"""Regenerate the real mitmproxy HAR fixture used by the webhook-callback audit tests.

Usage:
    python tests/data/har/make_mitmproxy_har.py OUT.har

Needs `mitmdump` (pip install mitmproxy) on PATH, next to this interpreter, or named
by the MITMDUMP environment variable.  Nothing else beyond the standard library.

Why this script exists: a hand-written HAR only shows what we *think* a HAR writer
emits.  This one makes mitmproxy itself write the file, so the fixture carries its
real quirks (field set, header casing, postData handling, timestamp format, ...).

What it does, all on 127.0.0.1 and bounded in time:
  1. starts a tiny upstream webhook server (stdlib http.server) in a thread;
  2. starts `mitmdump` in reverse-proxy mode in front of it with `hardump=OUT.har`;
  3. sends a fixed list of callback requests through the proxy (http.client, so we
     control the exact headers, including a repeated header);
  4. stops mitmdump with SIGINT and waits: mitmproxy writes the HAR only on a
     clean shutdown;
  5. checks the HAR is valid JSON with one entry per request and prints a summary.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LOOPBACK = "127.0.0.1"
# The exact body our audit tool has to recognise as "callback rejected".  Kept
# byte-exact (no spaces after separators), because the tests compare it verbatim.
NOT_FOUND_BODY = b'{"code":404,"message":"Waiting Webhook not found for provided token and identifiers"}'
OK_BODY = b'{"status":"ok"}'

STARTUP_TIMEOUT_S = 30  # mitmdump start-up (Python import + CA generation) can be slow
SHUTDOWN_TIMEOUT_S = 30
REQUEST_TIMEOUT_S = 10

UA = ("User-Agent", "webhook-fixture/1.0")

# (method, path, headers, body).  body=None means "send no body at all" (GET);
# b"" means an explicit empty body with Content-Length: 0 (a bare POST).
# Each case covers one shape the audit tool must parse from a HAR.
REQUESTS: list[tuple[str, str, list[tuple[str, str]], bytes | None]] = [
    # identifiers only in the query string, empty body
    ("POST", "/webhooks/wh-acme?pcid=PC-1001&status=approved", [UA], b""),
    # identifiers only in a urlencoded form body
    ("POST", "/webhooks/wh-acme",
     [UA, ("Content-Type", "application/x-www-form-urlencoded")],
     b"pcid=PC-1002&status=sold"),
    # nested JSON body, no pcid; reference lives at data.ref
    ("POST", "/webhooks/wh-json", [UA, ("Content-Type", "application/json")],
     b'{"data":{"ref":"EXT-77"},"status":"approved","amount":12.5}'),
    # numeric identifier in JSON (must not be assumed to be a string)
    ("POST", "/webhooks/wh-json", [UA, ("Content-Type", "application/json")],
     b'{"pcid":12345}'),
    # malformed JSON that claims to be JSON
    ("POST", "/webhooks/wh-json", [UA, ("Content-Type", "application/json")],
     b'{"pcid": "PC-1003",'),
    # GET callback: no body, so HAR writers may omit postData
    ("GET", "/webhooks/wh-acme?pcid=PC-1004", [UA], None),
    # identifier only in a custom header
    ("POST", "/webhooks/wh-acme", [UA, ("X-Lead-Id", "PC-1005")], b""),
    # the same header twice with different values (lossy writers keep only one)
    ("POST", "/webhooks/wh-acme",
     [UA, ("X-Lead-Id", "PC-1006"), ("X-Lead-Id", "PC-1007")], b""),
    # query value that needs percent-decoding: "A B+1"
    ("POST", "/webhooks/wh-acme?external_id=A%20B%2B1", [UA], b""),
    # unknown token -> 404 rejection body
    ("POST", "/webhooks/wh-unknown?pcid=PC-1", [UA], b""),
    # known token but identifiers the upstream does not know -> 404
    ("POST", "/webhooks/wh-acme?pcid=missing&status=approved", [UA], b""),
    # a non-POST method with a body
    ("PUT", "/webhooks/wh-acme", [UA, ("Content-Type", "application/json")],
     b'{"pcid":"PC-1008","status":"updated"}'),
]


class WebhookHandler(BaseHTTPRequestHandler):
    """Upstream stand-in: 200 {"status":"ok"} or the exact 404 rejection body."""

    protocol_version = "HTTP/1.1"  # real webhook endpoints speak 1.1 with keep-alive

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        parts = path.split("/")
        # Only /webhooks/<token>[/...] exists.
        if len(parts) < 3 or parts[1] != "webhooks" or not parts[2]:
            status, payload = 404, NOT_FOUND_BODY
        elif parts[2] == "wh-unknown" or "pcid=missing" in query or b"pcid=missing" in body:
            status, payload = 404, NOT_FOUND_BODY
        else:
            status, payload = 200, OK_BODY
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: object) -> None:  # keep output quiet
        pass


def free_port() -> int:
    # Ask the kernel for a free loopback port.  There is a tiny race before mitmdump
    # binds it, acceptable for a fixture generator.
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def find_mitmdump() -> str:
    candidates = [os.environ.get("MITMDUMP"),
                  str(Path(sys.executable).with_name("mitmdump")),
                  shutil.which("mitmdump")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    sys.exit("mitmdump not found: pip install mitmproxy, or set MITMDUMP=/path/to/mitmdump")


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"mitmdump exited early with code {proc.returncode}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit(f"mitmdump did not listen on {LOOPBACK}:{port} within {timeout}s")


def send(port: int, method: str, path: str, headers: list[tuple[str, str]],
         body: bytes | None) -> int:
    # http.client with putheader lets us send a header twice; urllib would merge it.
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body if body else None)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    out = Path(argv[1]).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()  # so a stale file can never pass for a fresh one

    upstream = ThreadingHTTPServer((LOOPBACK, 0), WebhookHandler)
    up_port = upstream.server_address[1]
    threading.Thread(target=upstream.serve_forever, daemon=True).start()

    proxy_port = free_port()
    # A throwaway confdir keeps mitmproxy from creating a CA in ~/.mitmproxy.
    with tempfile.TemporaryDirectory(prefix="mitm-conf-") as confdir:
        cmd = [find_mitmdump(),
               "--mode", f"reverse:http://{LOOPBACK}:{up_port}",
               "-p", str(proxy_port), "--listen-host", LOOPBACK,
               "--set", f"confdir={confdir}",
               "--set", f"hardump={out}",
               "-q"]
        print("running:", " ".join(cmd), file=sys.stderr)
        proc = subprocess.Popen(cmd)
        try:
            wait_for_port(proxy_port, proc, STARTUP_TIMEOUT_S)
            for method, path, headers, body in REQUESTS:
                status = send(proxy_port, method, path, headers, body)
                print(f"{status} {method} {path}", file=sys.stderr)
        finally:
            # SIGINT = clean shutdown; this is when mitmproxy writes the HAR.
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            upstream.shutdown()
            upstream.server_close()

    if not out.is_file():
        print(f"mitmdump exited ({proc.returncode}) without writing {out}", file=sys.stderr)
        return 1
    har = json.loads(out.read_text(encoding="utf-8"))
    entries = har["log"]["entries"]
    if len(entries) != len(REQUESTS):
        print(f"expected {len(REQUESTS)} entries, got {len(entries)}", file=sys.stderr)
        return 1
    for i, e in enumerate(entries):
        req, resp = e["request"], e["response"]
        print(f"{i}\t{req['method']}\t{req['url']}\t{resp['status']}\t"
              f"postData={'yes' if 'postData' in req else 'no'}")
    print(f"wrote {out} ({len(entries)} entries)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
