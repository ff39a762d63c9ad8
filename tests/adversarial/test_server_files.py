"""The file corpus (and hostile gold SQL) opened in a real `lse-server` process (the installed console script,
over stdio, trusted so that gold SQL runs): each hostile document gets its diagnostics within 2 s, the server
stays alive, its memory bounded, its folder unchanged, and a hover on a good suite still answers at the end."""

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

from tests.adversarial import file_corpus, harness, sql_corpus
from tests.conftest import build_skill_workspace

DIAGNOSTICS_S = 2.0  # a hostile document's diagnostics arrive within this
HOVER_S = 10.0


def _server_command() -> list[str]:
    script = Path(sys.executable).with_name("lse-server")
    return [str(script), "--stdio"] if script.exists() else [sys.executable, "-m", "lse_server", "--stdio"]


class Client:
    """A minimal LSP client over a server process's stdio: framed JSON out, framed JSON in under a deadline."""

    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen(_server_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, cwd=cwd)
        self.buf = b""
        self.next_id = 0
        self.diagnostics: dict[str, list[dict[str, Any]]] = {}
        self.published: dict[str, int] = {}  # uri -> how many times diagnostics came

    def send(self, **message: Any) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _read(self, deadline: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            if b"\r\n\r\n" in self.buf:
                head, _, rest = self.buf.partition(b"\r\n\r\n")
                size = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
                if len(rest) >= size:
                    self.buf = rest[size:]
                    message = json.loads(rest[:size])
                    if message.get("method") == "textDocument/publishDiagnostics":
                        uri = message["params"]["uri"]
                        self.diagnostics[uri] = message["params"]["diagnostics"]
                        self.published[uri] = self.published.get(uri, 0) + 1
                    elif "method" in message and "id" in message:  # a request of the server's: answer null
                        self.send(id=message["id"], result=None)
                    return message
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("no message in time")
            data = os.read(fd, 1 << 20)
            if not data:
                raise ConnectionError("the server closed its output")
            self.buf += data

    def request(self, method: str, params: Any, timeout: float) -> dict[str, Any]:
        self.next_id += 1
        self.send(id=self.next_id, method=method, params=params)
        deadline = time.monotonic() + timeout
        while True:
            message = self._read(deadline)
            if message.get("id") == self.next_id and "method" not in message:
                return message

    def wait_published(self, uri: str, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.published.get(uri, 0) < count:
            try:
                self._read(deadline)
            except TimeoutError:
                return False
        return True

    def open(self, path: Path, text: str) -> str:
        uri = path.as_uri()
        self.send(method="textDocument/didOpen", params={"textDocument": {"uri": uri, "languageId": "yaml",
                                                                           "version": 1, "text": text}})
        return uri

    def close_document(self, uri: str) -> None:
        self.send(method="textDocument/didClose", params={"textDocument": {"uri": uri}})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


# prompt-named files without `suite:` are not LSE's: the server leaves them alone
NOT_OURS = {"a binary prompt", "front matter that is a list"}


def _flagged(diagnostics: list[dict[str, Any]]) -> bool:
    return any(d.get("severity") in (1, 2) for d in diagnostics)


def _hostile_gold_suite(folder: Path) -> Path:
    """A suite whose gold queries are SQL attacks that a limit refuses at once (the endless ones hold a checker
    thread for the 30 s gold limit: one is in a suite of its own, `endless.suite.yaml`)."""
    folder.mkdir(parents=True)
    sql_corpus.build_attack_db(folder / "attack.sqlite")
    families = {"write", "memory", "parser", "cpu"}
    attacks = [a for a in sql_corpus.CORPUS if a.family in families and not (a.kinds & {"timeout"})][:40]
    problems = "".join(f"  - id: a{i}\n    question: attack {i}?\n    gold: {json.dumps(a.sql)}\n"
                       for i, a in enumerate(attacks))
    suite = folder / "attacks.suite.yaml"
    suite.write_text("task: text-to-sql\ndatabase: attack.sqlite\nproblems:\n" + problems)
    endless = json.dumps(sql_corpus.by_name()["recursive count"].sql)
    (folder / "endless.suite.yaml").write_text("task: text-to-sql\ndatabase: attack.sqlite\nproblems:\n"
                                               f"  - id: e\n    question: forever?\n    gold: {endless}\n")
    return suite


@pytest.mark.slow
def test_hostile_documents_leave_the_server_answering(tmp_path: Path) -> None:
    good = build_skill_workspace(tmp_path / "good", n_problems=6)
    attacks_dir = tmp_path / "attacks"
    hostile = [(a, a.build(attacks_dir / str(i))) for i, a in enumerate(file_corpus.CORPUS)
               if a.family in ("suite", "json", "prompt", "database")]
    gold_suite = _hostile_gold_suite(tmp_path / "gold")
    before = harness.tree_state(tmp_path)
    client = Client(tmp_path)
    try:
        client.request("initialize", {"processId": None, "rootUri": tmp_path.as_uri(), "capabilities": {},
                                      "initializationOptions": {"trusted": True}}, timeout=30)
        client.send(method="initialized", params={})
        start_peak = harness.peak_mb(client.proc.pid)
        slow: list[str] = []
        missing: list[str] = []
        for attack, ws in hostile:
            doc = ws.prompt if attack.family == "prompt" else ws.suite
            text = doc.read_bytes().decode("utf-8", errors="replace")  # what an editor would send
            started = time.monotonic()
            uri = client.open(doc, text)
            if not client.wait_published(uri, 1, 15):
                missing.append(attack.name)
                continue
            expected = attack.codes - {"encoding", "binary"} if text != doc.read_bytes().decode("utf-8", "ignore") \
                else attack.codes  # an editor shows bytes that are not UTF-8 as U+FFFD: valid text
            expected = frozenset() if attack.name in NOT_OURS else expected
            if expected and not _flagged(client.diagnostics[uri]):
                client.wait_published(uri, 2, DIAGNOSTICS_S)  # gold SQL checks publish a second time
            if time.monotonic() - started > DIAGNOSTICS_S:
                slow.append(f"{attack.name}: {time.monotonic() - started:.1f} s")
            elif expected and not _flagged(client.diagnostics[uri]):
                missing.append(f"{attack.name}: no error or warning in {client.diagnostics[uri]}")
            client.close_document(uri)
        assert missing == [] and slow == []
        # hostile gold SQL: checked by the server with its limits; every refused one reported
        uri = client.open(gold_suite, gold_suite.read_text())
        assert client.wait_published(uri, 2, 30), "no gold SQL diagnostics"
        codes = [d.get("code") for d in client.diagnostics[uri]]
        assert codes.count("gold-error") + codes.count("gold-parse") >= 30, codes
        # and a hover on a good suite still answers while an endless gold query is being checked
        endless = gold_suite.with_name("endless.suite.yaml")
        client.open(endless, endless.read_text())
        suite = good.parent / "nums.suite.yaml"
        client.open(suite, suite.read_text())
        line = next(i for i, t in enumerate(suite.read_text().split("\n")) if "which row holds 3?" in t)
        started = time.monotonic()
        reply = client.request("textDocument/hover", {"textDocument": {"uri": suite.as_uri()},
                                                      "position": {"line": line, "character": 6}}, timeout=HOVER_S)
        assert "q3" in reply["result"]["contents"]["value"] and time.monotonic() - started < HOVER_S
        assert client.proc.poll() is None, "the server died"
        growth = harness.peak_mb(client.proc.pid) - start_peak
        assert growth <= harness.RSS_LIMIT_MB, f"the server's memory grew by {growth:.0f} MB"
    finally:
        client.stop()
    after = harness.tree_state(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # no user file changed
    assert sorted(set(after) - set(before)) == []  # and none created (the store aside)
