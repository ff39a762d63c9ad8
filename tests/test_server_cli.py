"""`lse-server` from the command line: --version, --tcp with a real JSON-RPC session, --log-file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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

    def wait_notification_where(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        """The first notification (seen or still to come) that `pred` accepts."""
        found = next((n for n in self.notifications if pred(n)), None)
        deadline = time.monotonic() + timeout
        while found is None:
            assert time.monotonic() < deadline, "timed out waiting for a notification"
            msg = self._read()
            if "method" in msg and "id" not in msg:
                self.notifications.append(msg)
                if pred(msg):
                    found = msg
            elif "method" in msg and "id" in msg:  # a request from the server: answer it (null)
                self.send_response(msg["id"], None)
        return found

    def send_response(self, msg_id: Any, result: Any) -> None:
        body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": result}).encode()
        self.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

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
        assert [a["title"] for a in actions["result"]] == ["Evaluate prompt", "Evolve prompt"]  # the cheap one first
        assert actions["result"][0]["command"]["command"] == "lse.evaluate"
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


# -- no orphans: the worker dies with its server, however the server ends -------------------------------------------
def _alive(pid: int) -> bool:
    """Whether any thread of a process still runs (a zombie waiting for its reaper does not).

    Every thread counts: while a process exits, its main thread can already read as a zombie while another
    thread still holds the process's files (the run lock among them).
    """
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):
            continue
    return any(state not in ("Z", "X") for state in states)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


class _SlowScripted:
    """The scripted models of tests/test_server.py, each reply `delay` seconds late (a run that lasts)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __call__(self, messages: list[dict[str, Any]], request: dict[str, Any]) -> str:
        from tests.test_server import scripted_reply

        time.sleep(self.delay)
        return scripted_reply(messages, request)


def _start_run(prompt: Path, settings: dict[str, Any]) -> tuple[subprocess.Popen, RawClient, str, list[int]]:
    """A server on stdio running an evolve of `prompt`, past its first scored child; returns its worker pids."""
    log = prompt.parent / "server.log"
    proc = subprocess.Popen([*SERVER, "--stdio", "--log-file", str(log)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin and proc.stdout

    def write(data: bytes) -> None:
        proc.stdin.write(data)
        proc.stdin.flush()

    def read() -> bytes:
        data = proc.stdout.read1(65536)  # type: ignore[union-attr]
        if not data:
            raise AssertionError("the server ended early; its log:\n" + log.read_text()[-4000:])
        return data

    client = RawClient(write, read)
    client.request("initialize", {"processId": None, "rootUri": prompt.parent.as_uri(), "capabilities": {},
                                  "initializationOptions": {"trusted": True, "settings": settings}})
    client.send("initialized", {}, notify=True)
    client.send("textDocument/didOpen", {"textDocument": {"uri": prompt.as_uri(), "languageId": "markdown",
                                                          "version": 1, "text": prompt.read_text()}}, notify=True)
    started = client.request("workspace/executeCommand", {"command": "lse.evolve",
                                                          "arguments": [{"uri": prompt.as_uri(), "rounds": 40}]})
    run_id = started["result"]["runId"]
    client.wait_notification_where(lambda n: n["method"] == "lse/runProgress" and (n["params"].get("node") or {})
                                   .get("id", 0) >= 1 and n["params"]["node"].get("dev") is not None)
    workers = _children(proc.pid)
    assert workers, "the run has a worker process"
    return proc, client, run_id, workers


def _end(proc: subprocess.Popen, client: RawClient, how: str) -> None:
    assert proc.stdin
    if how == "stdin EOF":
        proc.stdin.close()
    elif how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    elif how == "exit":
        client.send("exit", None, notify=True)
    elif how == "SIGKILL":
        proc.kill()


def _lock_free_within(lock: Path, seconds: float) -> bool:
    """Whether the run's lock file can be taken within `seconds` (the OS drops a dead holder's lock)."""
    import fcntl

    deadline = time.monotonic() + seconds
    fd = os.open(lock, os.O_RDWR)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
    finally:
        os.close(fd)


def _resumable(prompt: Path, settings: dict[str, Any], run_id: str, nodes_before: list[tuple]) -> None:
    """The run's lock is free, the store is intact, the committed nodes are all there, and the run finishes when
    resumed."""
    from lse_server.settings import to_overrides

    from lse_engine.runner import evolve
    from lse_engine.store import RunLock
    from lse_engine.workspace import Workspace

    db = prompt.parent / ".lse" / "lse.db"
    assert _lock_free_within(RunLock(db).file(run_id), 5.0), "the run stays locked"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    ws = Workspace(prompt, to_overrides({"settings": settings}))
    try:
        result = evolve(ws, run_id=run_id, rounds=len(nodes_before) + 1)
    finally:
        ws.close()
    assert result.status == "done"
    conn = sqlite3.connect(db)
    after = conn.execute("SELECT id, instructions, dev_score FROM nodes WHERE run_id = ? ORDER BY id", [run_id]).fetchall()
    assert after[: len(nodes_before)] == nodes_before
    conn.close()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists processes through /proc")
@pytest.mark.parametrize("how", ["stdin EOF", "SIGTERM", "exit", "SIGKILL"])
def test_no_worker_outlives_its_server(tmp_path: Path, how: str) -> None:
    from tests.openai_stub import ScriptedOpenAIServer

    prompt = build_skill_workspace(tmp_path / "ws", n_problems=24)
    with ScriptedOpenAIServer(_SlowScripted(0.05)) as stub:
        settings = {"model": {"backend": "openai", "name": "scripted", "baseUrl": stub.base_url, "maxConcurrency": 2},
                    "evolve": {"batchSize": 4, "devSize": 8}}
        proc, client, run_id, workers = _start_run(prompt, settings)
        try:
            _end(proc, client, how)
            ended = time.monotonic()
            proc.wait(timeout=10)
            while any(map(_alive, workers)) and time.monotonic() - ended < 8:
                time.sleep(0.1)
            assert not any(map(_alive, workers)), f"a worker outlived its server ({how})"
        finally:
            if proc.poll() is None:
                proc.kill()
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        conn = sqlite3.connect(prompt.parent / ".lse" / "lse.db")
        nodes = conn.execute("SELECT id, instructions, dev_score FROM nodes WHERE run_id = ? AND dev_score IS NOT NULL "
                             "ORDER BY id", [run_id]).fetchall()
        conn.close()
        assert len(nodes) >= 2  # the root and the child scored before the end
        stub.delay_s = 0
        _resumable(prompt, settings, run_id, nodes)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists processes through /proc")
def test_a_worker_busy_in_a_torch_model_dies_with_a_killed_server(tmp_path: Path, tiny_model_dir: str) -> None:
    prompt = build_skill_workspace(tmp_path / "ws", n_problems=16)
    settings = {"model": {"backend": "transformers", "name": tiny_model_dir, "sampling": {"maxTokens": 24}},
                "evolve": {"batchSize": 4, "devSize": 4}}
    proc = subprocess.Popen([*SERVER, "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdin and proc.stdout

    def write(data: bytes) -> None:
        proc.stdin.write(data)
        proc.stdin.flush()

    client = RawClient(write, lambda: proc.stdout.read1(65536))
    try:
        client.request("initialize", {"processId": None, "rootUri": prompt.parent.as_uri(), "capabilities": {},
                                      "initializationOptions": {"trusted": True, "settings": settings}})
        client.send("initialized", {}, notify=True)
        started = client.request("workspace/executeCommand", {"command": "lse.evolve",
                                                              "arguments": [{"uri": prompt.as_uri(), "rounds": 40}]})
        run_id = started["result"]["runId"]
        client.wait_notification_where(lambda n: n["method"] == "lse/runProgress" and n["params"]["round"] >= 1)
        workers = _children(proc.pid)
        proc.kill()
        ended = time.monotonic()
        proc.wait(timeout=10)
        while any(map(_alive, workers)) and time.monotonic() - ended < 8:
            time.sleep(0.1)
        assert workers and not any(map(_alive, workers))
    finally:
        if proc.poll() is None:
            proc.kill()
    conn = sqlite3.connect(prompt.parent / ".lse" / "lse.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM runs WHERE id = ?", [run_id]).fetchone()[0] == 1
    conn.close()
