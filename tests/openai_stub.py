"""A real OpenAI-compatible HTTP server on loopback whose replies are scripted: a fake at the network boundary.

In-process API::

    from tests.openai_stub import ScriptedOpenAIServer

    def reply(messages: list[dict], request: dict) -> str:   # request = the full JSON body
        return "<answer>SELECT 1</answer>"

    with ScriptedOpenAIServer(reply) as srv:          # or ScriptedOpenAIServer(replies=[...] / {...})
        srv.base_url                                  # "http://127.0.0.1:PORT/v1"
        srv.fail("429", "500", "timeout", "400")      # queue faults: each request takes the next one, FIFO
        srv.fail({"kind": "429", "retry_after": 0.2}) # a fault as a dict: kind, retry_after, message, sleep_s
        srv.requests                                  # every /chat/completions body received (faulted too)
        srv.headers                                   # the matching request headers (lower-case keys)
        srv.completed, srv.max_in_flight              # successful replies; most requests in flight at once
        srv.delay_s = 0.05                            # sleep before every reply (to observe concurrency)

Endpoints: POST /v1/chat/completions, GET /v1/models, GET /health. Replies honour `stop` (cut at the earliest
stop string) but not `max_tokens`. Usage counts whitespace-separated words: prompt_tokens over all message
contents, completion_tokens over the reply. Fault kinds: "429" (Retry-After header, default 0), "timeout"
(sleep `sleep_s`, default 5 s, before answering: longer than the client's timeout), "drop" (close the
connection without answering), or any other status code as a string ("400", "500", "503", ...), answered
with an OpenAI-style error body {"error": {"message": ...}}.

`replies=` takes a list (returned cyclically) or a mapping {substring of the last message: reply}, with
"*" as the default. As a separate process::

    python tests/openai_stub.py --port 0 --replies replies.json [--delay 0.01]

prints "listening on http://127.0.0.1:PORT/v1" (flushed) and serves until killed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ReplyFn = Callable[[list[dict[str, Any]], dict[str, Any]], str]
Fault = dict[str, Any]


def replies_fn(replies: list[str] | dict[str, str]) -> ReplyFn:
    """A reply function from a list (cyclic) or a {substring of the last message: reply} mapping ("*": default)."""
    if isinstance(replies, dict):
        table = dict(replies)

        def by_key(messages: list[dict[str, Any]], request: dict[str, Any]) -> str:
            last = str(messages[-1].get("content", "")) if messages else ""
            return next((v for k, v in table.items() if k != "*" and k in last), table.get("*", ""))

        return by_key
    cycle: Iterator[str] = itertools.cycle(list(replies) or [""])
    lock = threading.Lock()

    def cyclic(messages: list[dict[str, Any]], request: dict[str, Any]) -> str:
        with lock:
            return next(cycle)

    return cyclic


def _words(text: Any) -> int:
    return len(str(text or "").split())


class ScriptedOpenAIServer:
    """A ThreadingHTTPServer in a background thread; see the module docstring for the API."""

    def __init__(self, reply: ReplyFn | None = None, *, replies: list[str] | dict[str, str] | None = None,
                 host: str = "127.0.0.1", port: int = 0, delay_s: float = 0.0, model: str = "scripted") -> None:
        if reply is None:
            reply = replies_fn(replies if replies is not None else ["ok"])
        self.reply = reply
        self.delay_s = delay_s
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.faults: deque[Fault] = deque()
        self.completed = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer((host, port), _handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}/v1"

    def fail(self, *faults: str | Fault) -> None:
        """Queue faults; each incoming chat request takes the next one."""
        with self.lock:
            self.faults.extend(f if isinstance(f, dict) else {"kind": str(f)} for f in faults)

    def reset(self) -> None:
        """Forget logged requests, counters and queued faults."""
        with self.lock:
            self.requests.clear()
            self.headers.clear()
            self.faults.clear()
            self.completed = self.max_in_flight = 0

    def start(self) -> ScriptedOpenAIServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="openai-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a "timeout" fault or a delay
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- called by the handler -------------------------------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def take(self, body: dict[str, Any], headers: dict[str, str]) -> Fault | None:
        """Log a chat request, count it in flight, and pop the next fault (if any)."""
        with self.lock:
            self.requests.append(body)
            self.headers.append(headers)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.faults.popleft() if self.faults else None

    def leave(self, ok: bool) -> None:
        with self.lock:
            self.in_flight -= 1
            self.completed += int(ok)

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = list(body.get("messages") or [])
        text = self.reply(messages, body)
        finish = "stop"
        stops = body.get("stop") or []
        hits = [i for i in (text.find(s) for s in ([stops] if isinstance(stops, str) else stops) if s) if i >= 0]
        if hits:
            text = text[: min(hits)]
        prompt = sum(_words(m.get("content")) for m in messages)
        return {
            "id": f"chatcmpl-{int(time.time() * 1e6)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": _words(text),
                      "total_tokens": prompt + _words(text)},
        }


class _Handler(BaseHTTPRequestHandler):
    """One request to the stub (`_handler` binds it to a server)."""

    stub: ScriptedOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout fired)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": self.stub.model, "object": "model"}]})
        elif self.path.rstrip("/") in ("/health", "/v1/health"):
            self._send(200, {"status": "ok"})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as e:
            self._send(400, {"error": {"message": f"invalid JSON: {e}", "type": "invalid_request_error"}})
            return
        fault = self.stub.take(body, {k.lower(): v for k, v in self.headers.items()})
        ok = False
        try:
            if fault is None:
                self.stub.sleep(self.stub.delay_s)
                self._send(200, self.stub.completion(body))
                ok = True
            else:
                self._fault(fault)
        except Exception as e:  # a bug in a reply function: report it like a server would
            self._send(500, {"error": {"message": f"reply function failed: {type(e).__name__}: {e}"}})
        finally:
            self.stub.leave(ok)

    def _fault(self, fault: Fault) -> None:
        kind = str(fault.get("kind", "500"))
        if kind == "timeout":
            self.stub.sleep(float(fault.get("sleep_s", 5.0)))
            self.close_connection = True
            self._send(504, {"error": {"message": "scripted timeout"}})
        elif kind == "drop":
            self.close_connection = True
        else:
            headers = {"Retry-After": str(fault.get("retry_after", 0))} if kind == "429" else {}
            message = fault.get("message") or f"scripted {kind} error"
            self._send(int(kind), {"error": {"message": message, "type": "scripted", "code": int(kind)}},
                       headers)


def _handler(server: ScriptedOpenAIServer) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"stub": server})


def main(argv: list[str] | None = None) -> None:
    """Serve replies from a JSON file (a list, cyclic, or a mapping) until killed."""
    p = argparse.ArgumentParser(description="A scripted OpenAI-compatible chat server for tests.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--replies", type=Path, help="JSON list of replies (cyclic) or {substring: reply} mapping")
    p.add_argument("--delay", type=float, default=0.0, help="seconds to sleep before each reply")
    args = p.parse_args(argv)
    replies = json.loads(args.replies.read_text()) if args.replies else ["ok"]
    with ScriptedOpenAIServer(replies=replies, host=args.host, port=args.port, delay_s=args.delay) as srv:
        print(f"listening on {srv.base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
