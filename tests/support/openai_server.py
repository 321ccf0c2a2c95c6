"""A local OpenAI-compatible chat-completions server that injects faults and counts requests.

It runs in a background thread on 127.0.0.1 (``ThreadingHTTPServer``, one thread per
connection). Each request body is hashed (canonical JSON); a ``faults`` function decides,
from that hash and how many times the same body was seen before, whether to answer
normally or with a fault:

* ``"429"`` — rate limited (with ``retry-after-ms`` so clients retry quickly),
* ``"500"`` — server error,
* ``"slow"`` — sleep ``slow_s`` before answering (longer than the client timeout),
* ``"bad_json"`` — HTTP 200 with a body that is not JSON,
* ``"html"`` — HTTP 200 with an HTML page (``text/html``), as a proxy or gateway sends,
* ``"no_choices"`` — HTTP 200 with JSON that is not a completion.

The reply text comes from a ``responder(body) -> str`` function, so it is deterministic per
request. Every request is logged as ``(hash, outcome)``; ``answered`` counts normal answers
per hash. ``delay_s`` adds latency to every request (for throughput benchmarks).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any]], str]
Faults = Callable[[str, int], str | None]


def body_hash(body: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a request body."""
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def no_faults(h: str, seen: int) -> str | None:
    """Never inject a fault."""
    return None


def echo_responder(body: dict[str, Any]) -> str:
    """Reply with a fixed JSON array naming the hash of the last message."""
    last = body["messages"][-1]["content"]
    return json.dumps([{"echo": hashlib.sha256(last.encode()).hexdigest()[:12]}])


@dataclass
class FakeState:
    """What the server saw (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    log: list[tuple[str, str]] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0


class FakeOpenAIServer:
    """The server. Use as a context manager; ``base_url`` is ``http://127.0.0.1:PORT/v1``."""

    def __init__(
        self,
        responder: Responder = echo_responder,
        faults: Faults = no_faults,
        delay_s: float = 0.0,
        slow_s: float = 2.0,
        model: str = "fake-model",
    ) -> None:
        self.responder, self.faults = responder, faults
        self.delay_s, self.slow_s, self.model = delay_s, slow_s, model
        self.state = FakeState()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def outcomes(self) -> Counter[str]:
        """How many requests ended in each outcome (``ok``, ``429``, ...)."""
        with self.state.lock:
            return Counter(o for _, o in self.state.log)

    def requests_for(self, hashes: set[str], since: int = 0) -> list[tuple[str, str]]:
        """Logged ``(hash, outcome)`` pairs, from log position ``since``, for those hashes."""
        with self.state.lock:
            return [(h, o) for h, o in self.state.log[since:] if h in hashes]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the body waits for the
            # client's delayed ACK (~40 ms per request).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None):
                self.send_response(status)
                headers = {"Content-Type": "application/json", **(headers or {})}
                self.send_header("Content-Length", str(len(payload)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(payload)

            def do_GET(self) -> None:
                if self.path.rstrip("/") in ("/health", "/v1/health"):
                    self._send(200, b"{}")
                elif self.path.rstrip("/") == "/stats":
                    with server.state.lock:
                        stats = {
                            "outcomes": dict(Counter(o for _, o in server.state.log)),
                            "max_in_flight": server.state.max_in_flight,
                        }
                    self._send(200, json.dumps(stats).encode())
                elif self.path.rstrip("/") == "/v1/models":
                    self._send(200, json.dumps({"data": [{"id": server.model}]}).encode())
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                h = body_hash(body)
                st = server.state
                with st.lock:
                    seen = st.seen[h]
                    st.seen[h] += 1
                    st.in_flight += 1
                    st.max_in_flight = max(st.max_in_flight, st.in_flight)
                try:
                    self._answer(body, h, seen)
                finally:
                    with st.lock:
                        st.in_flight -= 1

            def _answer(self, body: dict[str, Any], h: str, seen: int) -> None:
                if server.delay_s:
                    time.sleep(server.delay_s)
                fault = server.faults(h, seen)
                st = server.state
                with st.lock:
                    st.log.append((h, fault or "ok"))
                    if fault is None:
                        st.answered[h] += 1
                if fault == "429":
                    err = b'{"error": {"message": "rate limited", "type": "rate_limit"}}'
                    self._send(429, err, {"retry-after-ms": "20"})
                    return
                if fault == "500":
                    self._send(500, b'{"error": {"message": "boom", "type": "server_error"}}')
                    return
                if fault == "slow":
                    time.sleep(server.slow_s)
                if fault == "bad_json":
                    self._send(200, b'{"id": "x", "choices": [{"message": ')
                    return
                if fault == "html":
                    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
                    self._send(200, page, {"Content-Type": "text/html"})
                    return
                if fault == "no_choices":
                    self._send(200, b'{"status": "queued", "detail": "try later"}')
                    return
                content = server.responder(body)
                prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
                completion_tokens = len(content.split())
                payload = {
                    "id": f"chatcmpl-{h[:12]}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model", server.model),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                }
                self._send(200, json.dumps(payload).encode())

        return Handler


def main() -> None:
    """Serve in the foreground (a separate process, e.g. for benchmarks): prints the port,
    answers with the echo responder after ``--delay-s``, reports counts at ``GET /stats``."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--delay-s", type=float, default=0.0)
    args = ap.parse_args()
    srv = FakeOpenAIServer(delay_s=args.delay_s)
    print(srv.base_url.split(":")[-1].split("/")[0], flush=True)
    sys.stdout.close()
    srv._httpd.serve_forever()


if __name__ == "__main__":
    main()
