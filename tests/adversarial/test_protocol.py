"""Protocol attacks on a real `lse-server` process over stdio: broken framing, malformed JSON-RPC, odd params,
hostile paths and URIs. After each attack the server must still be alive and answer a hover on a suite problem
(with the gold result: it keeps running SQL checks), and every request that carries a usable id must get an
answer, with the JSON-RPC error the attack deserves."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import build_skill_workspace

SERVER = [sys.executable, "-m", "lse_server", "--stdio"]
ANSWER_S = 15.0  # a hover after an attack is answered within this
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
NOT_INITIALIZED, REQUEST_FAILED = -32002, -32803


def frame(body: bytes | str) -> bytes:
    data = body.encode() if isinstance(body, str) else body
    return b"Content-Length: %d\r\n\r\n" % len(data) + data


def msg(**fields: Any) -> bytes:
    return frame(json.dumps({"jsonrpc": "2.0", **fields}))


class Session:
    """A server process and a minimal client: raw bytes out, framed JSON in, reads under a deadline."""

    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen(SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, cwd=cwd)
        self.buf = b""
        self.next_id = 1000
        self.seen: list[dict[str, Any]] = []

    def send(self, data: bytes) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _recv(self, deadline: float) -> bytes:
        assert self.proc.stdout
        fd = self.proc.stdout.fileno()
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError("no answer in time")
        data = os.read(fd, 1 << 16)
        if not data:
            raise ConnectionError("the server closed its output")
        return data

    def read(self, deadline: float) -> dict[str, Any]:
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv(deadline)
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
        while len(rest) < length:
            rest += self._recv(deadline)
        self.buf = rest[length:]
        message = json.loads(rest[:length])
        if "method" in message and "id" in message:  # a request from the server: answer null
            self.send(msg(id=message["id"], result=None))
        self.seen.append(message)
        return message

    def answer(self, msg_id: Any, timeout: float = ANSWER_S) -> dict[str, Any]:
        """The response to `msg_id` (responses seen before included)."""
        deadline = time.monotonic() + timeout
        for m in self.seen:
            if m.get("id") == msg_id and "method" not in m:
                return m
        while True:
            m = self.read(deadline)
            if m.get("id") == msg_id and "method" not in m:
                return m

    def request(self, method: str, params: Any, timeout: float = ANSWER_S) -> dict[str, Any]:
        self.next_id += 1
        self.send(msg(id=self.next_id, method=method, params=params))
        return self.answer(self.next_id, timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_skill_workspace(tmp_path_factory.mktemp("protocol") / "ws", n_problems=12)


def _start(prompt: Path) -> Session:
    s = Session(prompt.parent)
    s.request("initialize", {"processId": None, "rootUri": prompt.parent.as_uri(), "capabilities": {},
                             "initializationOptions": {"trusted": True}})
    s.send(msg(method="initialized", params={}))
    suite = prompt.parent / "nums.suite.yaml"
    s.send(msg(method="textDocument/didOpen", params={"textDocument": {
        "uri": suite.as_uri(), "languageId": "yaml", "version": 1, "text": suite.read_text()}}))
    return s


@pytest.fixture(scope="module")
def server(workspace: Path):
    s = _start(workspace)
    yield s
    s.close()


def hover_works(s: Session, prompt: Path) -> None:
    suite = prompt.parent / "nums.suite.yaml"
    line = next(i for i, t in enumerate(suite.read_text().split("\n")) if "which row holds 3?" in t)
    reply = s.request("textDocument/hover", {"textDocument": {"uri": suite.as_uri()},
                                             "position": {"line": line, "character": 6}})
    assert s.proc.poll() is None, "the server died"
    assert "gold result" in reply["result"]["contents"]["value"], reply


def _id(n: int) -> int:
    return 500 + n


def req(n: int, method: str, params: Any = None, **extra: Any) -> bytes:
    return msg(id=_id(n), method=method, params=params, **extra)


HUGE = 256 * 1024 * 1024 + 1
# name -> (bytes to send, the id whose answer is checked (None: no answer expected), the error code expected;
#          None means a result)
ATTACKS: dict[str, tuple[bytes, Any, int | None]] = {
    "content-length not a number": (b"Content-Length: abc\r\n\r\n{}", None, None),
    "negative content-length": (b"Content-Length: -5\r\n\r\n{}", None, None),
    "content-length too short": (b"Content-Length: 10\r\n\r\n" + json.dumps(
        {"jsonrpc": "2.0", "id": _id(3), "method": "shutdown"}).encode(), None, None),
    "content-length too long": (b"Content-Length: 5000\r\n\r\n" + json.dumps(
        {"jsonrpc": "2.0", "method": "initialized", "params": {}}).encode(), None, None),
    "no content-length header": (b"Content-Type: application/json\r\n\r\n{\"jsonrpc\":\"2.0\"}", None, None),
    "junk before a header": (b"hello there\r\n" + req(6, "lse/runs", {}), _id(6), None),
    "LF-only line ends": (b"Content-Length: %d\n\n" % len(json.dumps({"jsonrpc": "2.0", "id": _id(7),
                                                                        "method": "lse/runs", "params": {}}))
                          + json.dumps({"jsonrpc": "2.0", "id": _id(7), "method": "lse/runs", "params": {}}).encode(),
                          _id(7), None),
    "100 KB header line": (b"X" * 100_000 + b"\r\n", None, None),
    "enormous content-length": (b"Content-Length: %d\r\n\r\n{\"jsonrpc\":\"2.0\"}" % HUGE, None, None),
    "body not UTF-8": (frame(b"\xff\xfe\x00garbage"), None, None),
    "body not JSON": (frame("{this is not json"), None, None),
    "a JSON array (batch)": (frame(json.dumps([{"jsonrpc": "2.0", "id": _id(12), "method": "shutdown"}])), None, None),
    "a JSON string": (frame('"hello"'), None, None),
    "100k-deep nesting": (frame('{"jsonrpc":"2.0","id":' + str(_id(14)) + ',"method":"lse/runs","params":'
                                + "[" * 100_000 + "]" * 100_000 + "}"), None, None),
    "a million-digit number": (frame('{"jsonrpc":"2.0","id":' + "9" * 1_000_000 + ',"method":"x"}'), None, None),
    "no jsonrpc field": (frame(json.dumps({"id": _id(16), "method": "lse/runs", "params": {}})), _id(16),
                         INVALID_REQUEST),
    "jsonrpc 1.0": (frame(json.dumps({"jsonrpc": "1.0", "id": _id(17), "method": "lse/runs"})), _id(17),
                    INVALID_REQUEST),
    "method not a string": (frame(json.dumps({"jsonrpc": "2.0", "id": _id(18), "method": 123})), _id(18),
                            INVALID_REQUEST),
    "id an object": (frame(json.dumps({"jsonrpc": "2.0", "id": {"a": 1}, "method": "lse/runs"})), None, None),
    "id a float": (frame(json.dumps({"jsonrpc": "2.0", "id": 1.5, "method": "lse/runs"})), None, None),
    "id null": (frame(json.dumps({"jsonrpc": "2.0", "id": None, "method": "lse/runs"})), None, None),
    "params a string": (req(22, "textDocument/hover", "hello"), _id(22), INVALID_PARAMS),
    "unknown method": (req(23, "lse/doesNotExist", {}), _id(23), METHOD_NOT_FOUND),
    "unknown notification": (msg(method="lse/whatever", params={"x": 1}), None, None),
    "hover without textDocument": (req(25, "textDocument/hover", {"position": {"line": 0, "character": 0}}),
                                   _id(25), INVALID_PARAMS),
    "hover with a negative position": (req(26, "textDocument/hover", {
        "textDocument": {"uri": "file:///nowhere/x.suite.yaml"}, "position": {"line": -1, "character": "a"}}),
        _id(26), INVALID_PARAMS),
    "hover on an http URI": (req(27, "textDocument/hover", {
        "textDocument": {"uri": "http://example.com/x.suite.yaml"}, "position": {"line": 0, "character": 0}}),
        _id(27), REQUEST_FAILED),
    "hover on a URI with a NUL": (req(28, "textDocument/hover", {
        "textDocument": {"uri": "file:///tmp/a%00b.suite.yaml"}, "position": {"line": 0, "character": 0}}),
        _id(28), REQUEST_FAILED),
    "hover on a URI that is not UTF-8": (req(29, "textDocument/hover", {
        "textDocument": {"uri": "file:///tmp/%FF%FE.suite.yaml"}, "position": {"line": 0, "character": 0}}),
        _id(29), REQUEST_FAILED),
    "hover on /dev/zero named as a suite": (b"", _id(30), REQUEST_FAILED),  # built in the test (a symlink)
    "didOpen with 6 MB": (msg(method="textDocument/didOpen", params={"textDocument": {
        "uri": "file:///tmp/lse-protocol-big.suite.yaml", "languageId": "yaml", "version": 1,
        "text": "problems:\n" + "  - id: x\n" * 600_000}}), None, None),
    "didChange of an unknown document": (msg(method="textDocument/didChange", params={
        "textDocument": {"uri": "file:///tmp/unknown.suite.yaml", "version": 2},
        "contentChanges": [{"text": "x"}]}), None, None),
    "didChange beyond the end": (b"", None, None),  # built in the test (needs the open suite)
    "didClose of an unknown document": (msg(method="textDocument/didClose", params={
        "textDocument": {"uri": "file:///tmp/never-opened.prompt.md"}}), None, None),
    "cancel an unknown request": (msg(method="$/cancelRequest", params={"id": 987654}), None, None),
    "unknown command": (req(36, "workspace/executeCommand", {"command": "lse.nope", "arguments": []}), _id(36),
                        INVALID_PARAMS),
    "command arguments of the wrong type": (req(37, "workspace/executeCommand", {
        "command": "lse.evaluate", "arguments": [{"uri": 123}]}), _id(37), REQUEST_FAILED),
    "command arguments not a list": (req(38, "workspace/executeCommand", {
        "command": "lse.evaluate", "arguments": "x"}), _id(38), REQUEST_FAILED),
    "a response to nothing": (msg(id=424242, result={"x": 1}), None, None),
    "a second initialize": (req(40, "initialize", {"processId": None, "rootUri": None, "capabilities": {}}),
                            _id(40), INVALID_REQUEST),
    "lse/tree with a number": (req(41, "lse/tree", 5), _id(41), INVALID_PARAMS),
    "lse/tree with a list of junk": (req(42, "lse/tree", [1, {"runId": 7}]), _id(42), REQUEST_FAILED),
    "settings of every wrong type": (msg(method="workspace/didChangeConfiguration", params={"settings": {
        "settings": {"model": [], "evolve": {"rounds": {"a": [1]}}, "files": {"prompts": 5}}}}), None, None),
    "deeply nested settings": (msg(method="workspace/didChangeConfiguration", params={"settings": json.loads(
        "[" * 500 + "]" * 500)}), None, None),
    "codeAction with an inverted range": (req(45, "textDocument/codeAction", {
        "textDocument": {"uri": "file:///tmp/x.prompt.md"}, "range": {
            "start": {"line": 9, "character": 0}, "end": {"line": 0, "character": 0}}, "context": {"diagnostics": []}}),
        _id(45), None),
    "codeLens on a folder": (req(46, "textDocument/codeLens", {"textDocument": {"uri": "file:///tmp"}}), _id(46), None),
    "a body split across a pause": (b"", _id(47), None),  # built in the test (a slow, honest client)
    "1000 hovers at once": (b"", None, None),  # built in the test
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_leaves_the_server_answering(server: Session, workspace: Path, tmp_path: Path, name: str) -> None:
    data, answer_id, code = ATTACKS[name]
    suite = workspace.parent / "nums.suite.yaml"
    if name == "hover on /dev/zero named as a suite":
        link = tmp_path / "zero.suite.yaml"
        link.symlink_to("/dev/zero")
        data = req(30, "textDocument/hover", {"textDocument": {"uri": link.as_uri()},
                                              "position": {"line": 0, "character": 0}})
    elif name == "didChange beyond the end":
        data = msg(method="textDocument/didChange", params={"textDocument": {"uri": suite.as_uri(), "version": 99},
                                                            "contentChanges": [{"range": {
                                                                "start": {"line": 10_000, "character": 5},
                                                                "end": {"line": 20_000, "character": 0}},
                                                                "text": "junk"}]})
        data += msg(method="textDocument/didChange", params={"textDocument": {"uri": suite.as_uri(), "version": 100},
                                                             "contentChanges": [{"text": suite.read_text()}]})
    elif name == "a body split across a pause":
        whole = req(47, "lse/runs", {})
        server.send(whole[:40])
        time.sleep(1.5)  # longer than the server's stall check: a slow client is not a broken one
        data = whole[40:]
    elif name == "1000 hovers at once":
        line = {"line": 0, "character": 0}
        data = b"".join(msg(id=10_000 + i, method="textDocument/hover",
                            params={"textDocument": {"uri": suite.as_uri()}, "position": line}) for i in range(1000))
    server.send(data)
    if answer_id is not None:
        reply = server.answer(answer_id)
        if code is None:
            assert "result" in reply, reply
        else:
            assert reply.get("error", {}).get("code") == code, reply
            assert "\n" not in reply["error"]["message"] and "data" not in reply["error"]
    if name == "1000 hovers at once":
        assert all("result" in server.answer(10_000 + i) for i in range(0, 1000, 97))
    hover_works(server, workspace)


def test_protocol_attack_count() -> None:
    assert len(ATTACKS) >= 30


def test_requests_before_initialize_and_after_shutdown(workspace: Path) -> None:
    s = Session(workspace.parent)
    try:
        s.send(msg(id=1, method="textDocument/hover", params={"textDocument": {"uri": "file:///x.suite.yaml"},
                                                              "position": {"line": 0, "character": 0}}))
        assert s.answer(1)["error"]["code"] == NOT_INITIALIZED
        s.request("initialize", {"processId": None, "rootUri": None, "capabilities": {},
                                 "initializationOptions": {"trusted": True}})
        s.send(msg(method="initialized", params={}))
        assert s.request("shutdown", None)["result"] is None
        assert s.request("lse/runs", {})["error"]["code"] == INVALID_REQUEST
        s.send(msg(method="exit"))
        assert s.proc.wait(timeout=15) == 0
    finally:
        s.close()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_memory_stays_bounded_under_junk(workspace: Path) -> None:
    """A client streaming 100 MB of junk without a header: the server's memory does not grow with it."""
    s = _start(workspace)
    try:
        hover_works(s, workspace)
        before = _rss_kb(s.proc.pid)
        chunk = b"J" * (1 << 20)
        for _ in range(100):
            s.send(chunk)
        hover_works(s, workspace)
        assert _rss_kb(s.proc.pid) - before < 100_000
    finally:
        s.close()

