"""The one parser for tagged replies (`<answer>…</answer>`, `<prompt>…</prompt>`), used by every task, the
search, rewards and training alike.

The reference's rule (lse/helpers.py `extract_from_tag`): take the *last* closing tag and the opening tag that
matches it, counting nesting. So prose that mentions the tag before the real block ("put it in <answer>
tags. <answer>SELECT 1</answer>") yields the block, and a prefilled reply that repeats the opening tag
("<prompt>\\n<prompt>\\nrules…</prompt>") yields what the model meant. A reply cut off inside its last block
(a stop string or the token limit) counts only when the caller allows it (`unclosed=True`) and the reply holds
no closed block: the text after the last unmatched opening tag.
"""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=16)
def _tag_re(tag: str) -> re.Pattern[str]:
    return re.compile(rf"<(/?){re.escape(tag)}>", re.IGNORECASE)


def extract_tag(text: str | None, tag: str, unclosed: bool = False) -> str | None:
    """The content of the block closed by the last `</tag>` (nesting-aware), stripped; None when there is no
    closed block (or, with `unclosed`, no opening tag either)."""
    if not text:
        return None
    stack: list[int] = []  # end offsets of opening tags not yet closed
    last: tuple[int, int] | None = None
    for m in _tag_re(tag).finditer(text):
        if m.group(1):  # a closing tag
            if stack:  # a closing tag without an opening one is ignored
                last = (stack.pop(), m.start())
        else:
            stack.append(m.end())
    if last is not None:  # a closed block wins over any unmatched opening tag around it
        return text[last[0]:last[1]].strip()
    if unclosed and stack:
        return _without_cut_closing_tag(text[stack[-1]:], tag).strip()
    return None


def _without_cut_closing_tag(block: str, tag: str) -> str:
    """An unclosed block without the start of its closing tag at its end: a reply cut at its token budget (or
    ended by its model) in the middle of `</answer>` ends in `</answer` or `</ans`, which is not part of the
    answer."""
    end = block.rstrip()
    cut = end.rfind("</")
    if cut >= 0 and f"</{tag}>".startswith(end[cut:].lower()):
        return end[:cut]
    return block
