"""A scripted chat model for algorithm tests: a *fake at the backend boundary*, never the feature itself.

Replies come from a Python function of the chat, so tests control exactly what the task model and the
evolver say while everything else (tree, scoring against SQLite, store, resume) is real.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence

from lse_engine.llm.base import Chat, Completion, Sampling

ReplyFn = Callable[[Chat], str]


class ScriptedLLM:
    def __init__(self, reply: ReplyFn, name: str = "scripted") -> None:
        self.reply = reply
        self.name = name
        self.calls: list[Chat] = []
        self.generate_calls = 0
        self.on_call: Callable[[int], None] | None = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return f"scripted:{self.name}"

    def generate(self, chats: Sequence[Chat], sampling: Sampling) -> list[Completion]:
        with self._lock:
            self.generate_calls += 1
            self.calls.extend(chats)
            n = self.generate_calls
        if self.on_call:
            self.on_call(n)
        return [Completion(self._reply(c, sampling), prompt_tokens=10, completion_tokens=5) for c in chats]

    def _reply(self, chat: Chat, sampling: Sampling) -> str:
        """A reply function marked `takes_sampling` also gets the decoding settings (its seed varies retries)."""
        return self.reply(chat, sampling) if getattr(self.reply, "takes_sampling", False) else self.reply(chat)

    def close(self) -> None:
        pass


def instructions_of(chat: Chat) -> str:
    """The instructions of a task chat: the end of its system message, after the '**Instructions**' line."""
    return chat[0]["content"].split("**Instructions**\n", 1)[-1]


def user_message(chat: Chat) -> str:
    """The last user message (an evolver chat may end with a prefilled assistant message)."""
    return next((m["content"] for m in reversed(chat) if m.get("role") == "user"), "")


def current_of(evolver_chat: Chat) -> str:
    """The current instructions, from the `<current>` block of the evolver's user message (never a prefill)."""
    m = re.search(r"<current>\n(.*?)\n</current>", user_message(evolver_chat), re.DOTALL)
    return m.group(1) if m else ""


def question_of(chat: Chat) -> str:
    """The question of a task chat (from its user message: the chat may end with the reply begun)."""
    m = re.search(r"^Question:\n(.*)$", user_message(chat), re.MULTILINE)
    return m.group(1) if m else ""
