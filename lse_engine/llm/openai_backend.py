"""Any OpenAI-compatible `/v1/chat/completions` server (vLLM serve, llama.cpp, Ollama, hosted APIs).

Chats are sent concurrently (at most `max_concurrency` in flight) and returned in order. 429, 5xx, timeouts
and connection errors are retried with exponential backoff and jitter, honouring `Retry-After`; any other
4xx fails at once with the server's message.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import httpx

from lse_engine.errors import BackendError, Cancelled, LSEError
from lse_engine.llm.base import CancelToken, Chat, Completion, Sampling, continues_reply


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_message(response: httpx.Response) -> str:
    """The server's error text: `error.message` of an OpenAI-style body, else the raw body (truncated)."""
    try:
        body = response.json()
    except (json.JSONDecodeError, ValueError):
        return response.text.strip()[:500] or response.reason_phrase
    err = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(err, dict):
        return str(err.get("message") or err.get("detail") or err)[:500]
    return str(err)[:500]


def _check(tokens: tuple[CancelToken | None, ...]) -> None:
    if any(t is not None and t.cancelled for t in tokens):
        raise Cancelled("cancelled")


class OpenAICompatLLM:
    """An LLM served over HTTP. `cancel` (attribute or generate() argument) stops new requests."""

    def __init__(self, model: str, base_url: str, api_key: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 max_concurrency: int = 8, timeout_s: float = 120.0, max_retries: int = 4,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0, cancel: CancelToken | None = None) -> None:
        if not base_url:
            raise LSEError('backend "openai" needs a base_url, e.g. base_url = "http://127.0.0.1:8000/v1" under '
                           "[model] in lse.toml")
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.max_retries = max(0, int(max_retries))
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.cancel = cancel
        key = api_key or (os.environ.get(api_key_env) if api_key_env else None)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        workers = max(1, int(max_concurrency))
        self._client = httpx.Client(timeout=timeout_s, headers=headers,
                                    limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lse-openai")

    @property
    def model_id(self) -> str:
        return f"openai:{self.base_url}:{self.name}"

    def body(self, chat: Chat, sampling: Sampling, index: int = 0) -> dict[str, Any]:
        """The request JSON for the `index`-th chat of a call. Its seed is the call's seed + index (as the
        transformers backend draws), so that k samples of one problem in one call are k different draws."""
        body: dict[str, Any] = {"model": self.name, "messages": [dict(m) for m in chat],
                                "temperature": sampling.temperature, "top_p": sampling.top_p,
                                "max_tokens": sampling.max_tokens}
        if continues_reply(chat):  # a prefill, as vLLM serve spells it (llama.cpp continues one by itself)
            body.update(continue_final_message=True, add_generation_prompt=False)
        if sampling.seed is not None:
            body["seed"] = sampling.seed + index
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        return body

    def generate(self, chats: Sequence[Chat], sampling: Sampling,
                 cancel: CancelToken | None = None) -> list[Completion]:
        """One completion per chat, in order; raises Cancelled (no new requests) once `cancel` is set."""
        token = cancel or self.cancel
        abort = CancelToken()  # set when this call ends early, so its queued and retrying requests stop
        tokens = (token, abort)
        futures = [self._pool.submit(self._complete, self.body(c, sampling, i), tokens) for i, c in enumerate(chats)]
        try:
            pending: set[Future[Completion]] = set(futures)
            while pending:
                if token is not None and token.cancelled:
                    raise Cancelled("cancelled")
                done, pending = wait(pending, timeout=0.05, return_when=FIRST_COMPLETED)
                for f in done:
                    f.result()  # surface the first failure now
            return [f.result() for f in futures]
        finally:
            abort.cancel()
            for f in futures:
                f.cancel()

    def _complete(self, body: dict[str, Any], cancel: tuple[CancelToken | None, ...]) -> Completion:
        url = f"{self.base_url}/chat/completions"
        for attempt in range(self.max_retries + 1):
            _check(cancel)
            retry_after: float | None = None
            try:
                response = self._client.post(url, json=body)
            except httpx.TransportError as e:  # timeouts, refused or dropped connections
                problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            else:
                if response.status_code == 200:
                    return self._parse(response)
                problem = f"HTTP {response.status_code}: {error_message(response)}"
                if response.status_code != 429 and response.status_code < 500:
                    raise BackendError(f"{url} rejected the request with {problem}")
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if attempt == self.max_retries:
                raise BackendError(f"{url} failed after {attempt + 1} attempt(s); last error {problem}")
            self._sleep(self._delay(attempt, retry_after), cancel)
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        growth: int = 2**attempt
        return min(self.max_backoff_s, self.backoff_s * growth) * random.uniform(0.5, 1.0)

    @staticmethod
    def _sleep(seconds: float, cancel: tuple[CancelToken | None, ...]) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            _check(cancel)
            time.sleep(min(left, 0.05))

    def _parse(self, response: httpx.Response) -> Completion:
        try:
            data = response.json()
            choice = data["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise BackendError(f"{self.base_url} sent a reply that is not a chat completion: "
                               f"{response.text[:300]!r}") from e
        usage = data.get("usage") or {}
        return Completion(text=(choice.get("message") or {}).get("content") or "",
                          prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0),
                          finish_reason=choice.get("finish_reason") or "stop")

    def close(self) -> None:
        """Stop the workers and close connections."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
