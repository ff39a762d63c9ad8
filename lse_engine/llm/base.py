"""The one protocol every model backend implements: batched chat generation."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}
Chat = list[Message]
# A chat that ends with an assistant message is a *prefill*: the model continues that message, and the
# completion holds only the continuation. Every backend honours it (`continues_reply`).


def continues_reply(chat: Chat) -> bool:
    """True when the chat asks the model to continue its own (prefilled) reply."""
    return bool(chat) and chat[-1].get("role") == "assistant"


@dataclass(frozen=True)
class Sampling:
    """Decoding settings for one generate() call. temperature 0 means greedy."""

    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def key(self) -> dict[str, Any]:
        """A stable, JSON-able form used in cache keys."""
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass
class Completion:
    """One generated reply with its token counts."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"


@dataclass
class CancelToken:
    """Cooperative cancellation shared between a caller and long-running work."""

    _event: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@runtime_checkable
class LLM(Protocol):
    """A chat model. `generate` returns one completion per chat, in order."""

    @property
    def model_id(self) -> str:
        """A stable identity (backend + model + adapter) used in outcome cache keys."""
        ...

    def generate(self, chats: Sequence[Chat], sampling: Sampling) -> list[Completion]: ...

    def close(self) -> None: ...
