"""Replies that carry new instructions in `<prompt>…</prompt>` (the paper's, compact and TextGrad-style
requests): the reply as it is parsed, and the parsing. The search and training both read replies with these
functions, so they agree on what counts as new instructions."""

from __future__ import annotations

from lse_engine.evolve import prompts
from lse_engine.llm.base import Chat, continues_reply
from lse_engine.tags import extract_tag

PROMPT_PREFILL = prompts.PROMPT_PREFILL
STOP = "</prompt>"  # the evolver's generation stops here: nothing useful follows the new instructions


def with_prefill(chat: Chat, start: str = "") -> Chat:
    """The chat with the evolver's reply begun at `<prompt>` (for small models that never write the tag), and
    optionally with `start`, the first words of the new instructions."""
    return [*chat, {"role": "assistant", "content": PROMPT_PREFILL + start}]


def reply_text(chat: Chat, completion: str, hit_limit: bool = False) -> str:
    """The whole reply as it is parsed, in the search and in training alike: the prefill (when the chat has
    one) and the completion, cut at the stop string `</prompt>`, which is put back (the backend removed it)
    unless the reply has no `<prompt>` at all or ran into the token limit."""
    completion = completion.split(STOP, 1)[0]
    raw = (chat[-1]["content"] if continues_reply(chat) else "") + completion
    if continues_reply(chat) or "<prompt>" in raw.lower():
        raw = raw if hit_limit or STOP in raw.lower() else raw + STOP
    return raw


def normalize(instructions: str) -> str:
    """Instructions with whitespace runs collapsed: two edits that differ only in spacing are the same edit."""
    return " ".join(instructions.split())


def parse_edit(raw: str, prefilled: bool, max_chars: int, request: str = "", current: str = "",
               hit_limit: bool = False) -> tuple[str | None, str | None]:
    """(new instructions, None), or (None, why not). The block closed by the reply's last `</prompt>` wins;
    a prefilled reply (it began with `<prompt>`) may end without its closing tag when the model stopped by
    itself, not when it ran into the token limit. Instructions that copy long stretches of the `request`
    (the schema, the feedback) are not instructions."""
    new = extract_tag(raw, "prompt", unclosed=prefilled and not hit_limit)
    if new is None and hit_limit and extract_tag(raw, "prompt", unclosed=True):
        return None, "the reply ran into the token limit before </prompt>"
    if new is None:
        return None, "no <prompt>…</prompt> block in the evolver's reply"
    if not new:
        return None, "the <prompt> block is empty"
    if max_chars and len(new) > max_chars:
        return None, f"the new instructions are too long ({len(new)} > {max_chars} characters)"
    if request and copies(new, request, current):
        return None, "the reply copies the request (schema or feedback) instead of writing instructions"
    return new, None


COPY_WINDOW = 60  # characters compared at a time
COPY_SHARE = 0.5  # an edit whose new text is mostly verbatim stretches of the request is copying


def copies(new: str, request: str, current: str = "") -> bool:
    """True when most of what `new` adds to the current instructions is copied verbatim from `request` (the
    schema, the feedback): an echo, not instructions. Quoting one query as an example is fine."""
    added = new.replace(current.strip(), "") if current.strip() else new
    starts = range(0, max(0, len(added) - COPY_WINDOW) + 1, COPY_WINDOW // 2)
    windows = [added[i:i + COPY_WINDOW] for i in starts if len(added[i:i + COPY_WINDOW].strip()) >= COPY_WINDOW // 2]
    if len(windows) < 2:
        return False
    copied = sum(1 for w in windows if w in request)
    return copied / len(windows) > COPY_SHARE
