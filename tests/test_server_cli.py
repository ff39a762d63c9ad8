"""`lse-server` from the command line: --version, --tcp with a real JSON-RPC session, --log-file."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lse_engine import __version__
from tests.conftest import build_skill_workspace

SERVER = [sys.executable, "-m", "lse_server"]


def test_version() -> None:
    out = subprocess.run([*SERVER, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"lse-server {__version__}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RawClient:
    """Just enough JSON-RPC over a byte stream: Content-Length framing, requests matched by id."""

    def __init__(self, write: Callable[[bytes], Any], read: Callable[[], bytes]) -> None:
        self.write, self.read = write, read
        self.buf = b""
        self.next_id = 0
        self.notifications: list[dict[str, Any]] = []

    def send(self, method: str, params: Any, notify: bool = False) -> int | None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        msg_id = None
        if not notify:
            self.next_id += 1
            msg_id = msg["id"] = self.next_id
        body = json.dumps(msg).encode()
        self.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return msg_id

    def _read(self) -> dict[str, Any]:
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
        while len(rest) < length:
            rest += self._recv()
        self.buf = rest[length:]
        return json.loads(rest[:length])

    def _recv(self) -> bytes:
        data = self.read()
        if not data:
            raise ConnectionError("the server closed the connection")
        return data

    def request(self, method: str, params: Any) -> dict[str, Any]:
        msg_id = self.send(method, params)
        while True:
            msg = self._read()
            if msg.get("id") == msg_id and "method" not in msg:
                return msg
            if "method" in msg and "id" not in msg:
                self.notifications.append(msg)

    def wait_notification(self, method: str) -> dict[str, Any]:
        found = next((n for n in self.notifications if n["method"] == method), None)
        while found is None:
            msg = self._read()
            if msg.get("method") == method:
                found = msg
        return found


def test_tcp_session_with_log_file(tmp_path: Path) -> None:
    prompt = build_skill_workspace(tmp_path / "ws", n_problems=8)
    port, log = _free_port(), tmp_path / "server.log"
    proc = subprocess.Popen([*SERVER, "--tcp", f"127.0.0.1:{port}", "--log-file", str(log)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "the server never listened"
                time.sleep(0.1)
        client = RawClient(sock.sendall, lambda: sock.recv(65536))
        init = client.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
        caps = init["result"]["capabilities"]
        assert set(caps["executeCommandProvider"]["commands"]) >= {"lse.evaluate", "lse.evolve", "lse.cancel"}
        client.send("initialized", {}, notify=True)
        uri = prompt.as_uri()
        client.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "markdown", "version": 1,
                                                              "text": prompt.read_text()}}, notify=True)
        actions = client.request("textDocument/codeAction", {
            "textDocument": {"uri": uri}, "range": {"start": {"line": 3, "character": 0},
                                                    "end": {"line": 3, "character": 0}},
            "context": {"diagnostics": []}})
        assert [a["title"] for a in actions["result"]] == ["Evolve prompt", "Evaluate prompt"]
        assert actions["result"][0]["command"]["command"] == "lse.evolve"
        diags = client.wait_notification("textDocument/publishDiagnostics")
        assert diags["params"]["uri"] == uri and diags["params"]["diagnostics"] == []
        assert client.request("shutdown", None)["result"] is None
        client.send("exit", None, notify=True)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert f"lse-server {__version__} listening on 127.0.0.1:{port}" in log.read_text()


def test_a_client_that_never_reads_stderr_does_not_stall_the_server(tmp_path: Path) -> None:
    """Some clients pipe the server's stderr and never read it (pygls' own client does): the server must not
    write so much there by default that the pipe fills and it blocks mid-session."""
    import yaml

    prompt = build_skill_workspace(tmp_path / "ws", n_problems=300)
    suite = prompt.parent / "nums.suite.yaml"
    text = suite.read_text()
    hover_lines = [i for i, s in enumerate(text.split("\n")) if s.lstrip().startswith("- id:")]
    assert len(hover_lines) == len(yaml.safe_load(text)["problems"])
    proc = subprocess.Popen([*SERVER, "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # stderr: never read
    assert proc.stdin and proc.stdout

    def write(data: bytes) -> None:
        proc.stdin.write(data)
        proc.stdin.flush()

    client = RawClient(write, lambda: proc.stdout.read1(65536))
    watchdog = threading.Timer(60, proc.kill)  # a stalled server fails the test instead of hanging it
    watchdog.start()
    try:
        client.request("initialize", {"processId": None, "rootUri": None, "capabilities": {},
                                      "initializationOptions": {"trusted": True}})
        client.send("initialized", {}, notify=True)
        client.send("textDocument/didOpen", {"textDocument": {"uri": suite.as_uri(), "languageId": "yaml",
                                                              "version": 1, "text": text}}, notify=True)
        for round_ in range(3):  # ~900 hovers with gold results: far more than a pipe's 64 KiB if logged
            for line in hover_lines:
                reply = client.request("textDocument/hover", {"textDocument": {"uri": suite.as_uri()},
                                                              "position": {"line": line, "character": 4}})
                assert "gold result" in reply["result"]["contents"]["value"], (round_, line)
        client.request("shutdown", None)
        client.send("exit", None, notify=True)
        assert proc.wait(timeout=30) == 0
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
