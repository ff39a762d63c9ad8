"""The OpenAI-compatible backend against a real loopback HTTP server with scripted replies and faults."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lse_engine.errors import BackendError, Cancelled, LSEError
from lse_engine.llm import make_llm
from lse_engine.llm.base import CancelToken, Sampling
from lse_engine.llm.openai_backend import OpenAICompatLLM, parse_retry_after
from tests.openai_stub import ScriptedOpenAIServer


def echo(messages: list[dict], request: dict) -> str:
    return f"echo {messages[-1]['content']}"


def chats(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "system", "content": "be brief"}, {"role": "user", "content": f"q{i}"}] for i in range(n)]


@pytest.fixture()
def srv():
    with ScriptedOpenAIServer(echo) as s:
        yield s


def client(srv: ScriptedOpenAIServer, **kw) -> OpenAICompatLLM:
    kw = {"max_concurrency": 4, "timeout_s": 5.0, "max_retries": 3, "backoff_s": 0.01, **kw}
    return OpenAICompatLLM(model="scripted", base_url=srv.base_url, **kw)


def test_order_is_preserved_and_concurrency_is_bounded(srv: ScriptedOpenAIServer) -> None:
    srv.delay_s = 0.05
    llm = client(srv, max_concurrency=3)
    out = llm.generate(chats(12), Sampling(max_tokens=7, temperature=0.5, top_p=0.9, seed=11, stop=("</x>",)))
    llm.close()
    assert [c.text for c in out] == [f"echo q{i}" for i in range(12)]
    assert srv.max_in_flight == 3 and srv.completed == 12
    body = srv.requests[0]
    assert body["model"] == "scripted" and body["messages"][0] == {"role": "system", "content": "be brief"}
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["stop"]) == (0.5, 0.9, 7, ["</x>"])
    assert {b["messages"][1]["content"]: b["seed"] for b in srv.requests} == {f"q{i}": 11 + i for i in range(12)}


def test_samples_of_one_chat_in_one_call_get_different_seeds(srv: ScriptedOpenAIServer) -> None:
    """The scorer sends a problem's k samples as k copies of its chat in one call: k draws, not one drawn k times."""
    llm = client(srv)
    llm.generate(chats(1) * 4, Sampling(temperature=0.7, seed=5))
    llm.close()
    assert sorted(b["seed"] for b in srv.requests) == [5, 6, 7, 8]


def test_a_prefilled_reply_asks_the_server_to_continue_it(srv: ScriptedOpenAIServer) -> None:
    llm = OpenAICompatLLM("scripted", srv.base_url)
    llm.generate([[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<prompt>"}],
                  [{"role": "user", "content": "hi"}]], Sampling())
    prefilled, plain = sorted(srv.requests[-2:], key=lambda b: len(b["messages"]), reverse=True)
    assert prefilled["continue_final_message"] is True and prefilled["add_generation_prompt"] is False
    assert "continue_final_message" not in plain and "add_generation_prompt" not in plain
    llm.close()


def test_usage_counts_tokens_and_model_id(srv: ScriptedOpenAIServer) -> None:
    llm = client(srv)
    [c] = llm.generate(chats(1), Sampling())
    assert (c.prompt_tokens, c.completion_tokens, c.finish_reason) == (3, 2, "stop")
    assert "seed" not in srv.requests[0] and "stop" not in srv.requests[0]
    assert llm.model_id == f"openai:{srv.base_url}:scripted"
    llm.close()


def test_stop_strings_are_applied_by_the_server(srv: ScriptedOpenAIServer) -> None:
    llm = client(srv)
    [c] = llm.generate([[{"role": "user", "content": "a</answer>b"}]], Sampling(stop=("</answer>",)))
    assert c.text == "echo a"
    llm.close()


def test_retries_429_500_timeout_and_dropped_connection_then_succeeds(srv: ScriptedOpenAIServer) -> None:
    srv.fail({"kind": "429", "retry_after": 0.3}, "500", {"kind": "timeout", "sleep_s": 2.0}, "drop")
    llm = client(srv, max_concurrency=1, timeout_s=0.5, max_retries=4)
    t0 = time.monotonic()
    [c] = llm.generate(chats(1), Sampling())
    elapsed = time.monotonic() - t0
    llm.close()
    assert c.text == "echo q0"
    assert len(srv.requests) == 5 and srv.completed == 1
    assert elapsed >= 0.3 + 0.5  # honoured Retry-After, waited for the client timeout
    assert elapsed < 3.0


def test_a_400_fails_at_once_with_the_servers_message(srv: ScriptedOpenAIServer) -> None:
    srv.fail({"kind": "400", "message": "max_tokens is too large: 99999"})
    llm = client(srv, max_concurrency=1)
    t0 = time.monotonic()
    with pytest.raises(BackendError, match=r"HTTP 400: max_tokens is too large: 99999"):
        llm.generate(chats(1), Sampling())
    assert time.monotonic() - t0 < 1.0 and len(srv.requests) == 1
    llm.close()


def test_exhausted_retries_raise_backend_error(srv: ScriptedOpenAIServer) -> None:
    srv.fail(*["503"] * 3)
    llm = client(srv, max_concurrency=1, max_retries=2)
    with pytest.raises(BackendError, match=r"after 3 attempt\(s\).*HTTP 503: scripted 503 error"):
        llm.generate(chats(1), Sampling())
    assert len(srv.requests) == 3
    llm.close()


def test_connection_refused_is_retried_then_reported() -> None:
    with ScriptedOpenAIServer(echo) as s:
        url = s.base_url
    llm = OpenAICompatLLM("m", url, max_retries=1, backoff_s=0.01, timeout_s=1.0)
    with pytest.raises(BackendError, match="after 2 attempt"):
        llm.generate(chats(1), Sampling())
    llm.close()


def test_cancel_stops_issuing_requests(srv: ScriptedOpenAIServer) -> None:
    srv.delay_s = 0.1
    cancel = CancelToken()
    llm = client(srv, max_concurrency=2, cancel=cancel)
    threading.Timer(0.15, cancel.cancel).start()
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        llm.generate(chats(40), Sampling())
    assert time.monotonic() - t0 < 1.0
    time.sleep(0.3)  # requests already in flight finish; no new ones start
    sent = len(srv.requests)
    assert 2 <= sent <= 8
    time.sleep(0.3)
    assert len(srv.requests) == sent
    llm.close()


def test_cancel_interrupts_backoff(srv: ScriptedOpenAIServer) -> None:
    srv.fail({"kind": "429", "retry_after": 20})
    cancel = CancelToken()
    llm = client(srv, max_concurrency=1, max_backoff_s=60)
    threading.Timer(0.2, cancel.cancel).start()
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        llm.generate(chats(1), Sampling(), cancel=cancel)
    assert time.monotonic() - t0 < 2.0 and len(srv.requests) == 1
    llm.close()


def test_api_key_from_env_and_factory(srv: ScriptedOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSE_TEST_KEY", "sk-123")
    llm = make_llm("openai", "scripted", base_url=srv.base_url + "/", api_key_env="LSE_TEST_KEY")
    assert llm.generate(chats(1), Sampling())[0].text == "echo q0"
    assert srv.headers[0]["authorization"] == "Bearer sk-123"
    llm.close()
    with pytest.raises(LSEError, match="base_url"):
        make_llm("openai", "scripted", base_url="")
    with pytest.raises(LSEError, match="transformers, openai, vllm"):
        make_llm("llamafile", "x")


def test_retry_after_parsing() -> None:
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_stub_runs_as_a_separate_process(tmp_path: Path) -> None:
    replies = tmp_path / "replies.json"
    replies.write_text('{"capital": "Paris", "*": "no idea"}')
    stub = Path(__file__).with_name("openai_stub.py")
    proc = subprocess.Popen([sys.executable, str(stub), "--port", "0", "--replies", str(replies)],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("listening on http://127.0.0.1:")
        llm = OpenAICompatLLM("m", line.split()[-1])
        out = llm.generate([[{"role": "user", "content": "the capital of France?"}],
                            [{"role": "user", "content": "2+2?"}]], Sampling())
        assert [c.text for c in out] == ["Paris", "no idea"]
        llm.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
