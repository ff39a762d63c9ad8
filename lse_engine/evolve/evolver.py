"""The evolver's request and the parsing of its reply into new instructions (texts in `prompts`).

The request is the reference's: the current agent prompt (the fixed template with the schema and the current
instructions), the instructions again inside `<current>`, the evaluation summary of a batch, and the ask for
new instructions inside `<prompt>…</prompt>`. The same request and the same parsing serve the search, the
rewards and the training rollouts.
"""

from __future__ import annotations

import re

from lse_engine.evolve import prompts
from lse_engine.llm.base import Chat, continues_reply
from lse_engine.tags import extract_tag
from lse_engine.tasks.sql_values import ONLY_VALUES, SUCH_VALUES

PROMPT_PREFILL = prompts.PROMPT_PREFILL
STOP = "</prompt>"  # the evolver's generation stops here: nothing useful follows the new instructions
CRITIQUE_CHARS = 600


def with_prefill(chat: Chat, start: str = "") -> Chat:
    """The chat with the evolver's reply begun at `<prompt>` (for small models that never write the tag), and
    optionally with `start`, the first words of the new instructions."""
    return [*chat, {"role": "assistant", "content": PROMPT_PREFILL + start}]


def compact_start(instructions: str) -> str:
    """The compact request's prefill: the current instructions and a new bullet, so the reply continues a list."""
    return instructions.strip() + "\n- "


def build_compact_chat(instructions: str, mistakes: str, task_kind: str) -> Chat:
    """The short, structured request for small evolvers (`request = "compact"`)."""
    template = prompts.COMPACT.get(task_kind, prompts.COMPACT["text-to-sql"])
    return [{"role": "user", "content": template.format(instructions=instructions.strip(), mistakes=mistakes.strip())}]


def build_chat(instructions: str, feedback: str, task_kind: str, agent_prompt: str | None = None,
               n_problems: int | None = None) -> Chat:
    """The evolver's request. `agent_prompt` is the rendered system prompt the task model saw (with the
    schema); without it, the instructions stand in for it (old runs, tests)."""
    template = prompts.EVOLVE.get(task_kind, prompts.EVOLVE["text-to-sql"])
    n = n_problems if n_problems is not None else feedback.count("\nCorrect: ") + feedback.startswith("Correct: ")
    user = template.format(agent_prompt=(agent_prompt or instructions).strip(), instructions=instructions.strip(),
                           n_problems=n, summary=feedback.strip())
    return [{"role": "user", "content": user}]


def reply_text(chat: Chat, completion: str, hit_limit: bool = False) -> str:
    """The whole reply as it is parsed, in the search and in training alike: the prefill (when the chat has
    one) and the completion, cut at the stop string `</prompt>`, which is put back (the backend removed it)
    unless the reply has no `<prompt>` at all or ran into the token limit."""
    completion = completion.split(STOP, 1)[0]
    raw = (chat[-1]["content"] if continues_reply(chat) else "") + completion
    if continues_reply(chat) or "<prompt>" in raw.lower():
        raw = raw if hit_limit or STOP in raw.lower() else raw + STOP
    return raw


def build_fact_chat(question: str, answer: str, gold: str, wrote: str, should: str, task_kind: str) -> Chat:
    """One mistake, one question (`request = "facts"`): what rule explains the value the correct answer has where
    the wrong one has another. The reply is begun with the rule's first words."""
    kind = task_kind if task_kind in prompts.FACT else "text-to-sql"
    user = prompts.FACT[kind].format(question=question, answer=answer, gold=gold, wrote=wrote or "nothing",
                                     should=should or "nothing")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": prompts.FACT_PREFILL[kind]}]


def build_column_fact_chat(question: str, answer: str, gold: str, column: str, values: str, stored: str) -> Chat:
    """One SQL mistake where the correct query compares `column` with `values` (`request = "facts"`): the request
    shows how the column stores its values (`stored`) and the reply begins with the column's name."""
    user = prompts.FACT_COLUMN.format(question=question, answer=answer, gold=gold, column=column, values=values,
                                      stored=stored)
    return [{"role": "user", "content": user},
            {"role": "assistant", "content": prompts.FACT_COLUMN_PREFILL.format(column=column)}]


def fact_text(chat: Chat, completion: str) -> str:
    """The fact as written: the prefill's words after `Fact:` or `Rule:`, then the completion."""
    start = chat[-1]["content"] if continues_reply(chat) else ""
    start = start.removeprefix("Fact:").removeprefix("Rule:").strip()
    return (start + " " + completion.strip()).strip()


_FACT_LEADS = ("the correct query knows that ", "the correct query knows ", "the correct answer knows that ",
               "fact:", "rule:", "the fact is that ", "in this database,")
# the block the facts go in: a small task model applies every rule it reads to every question ("use BETWEEN for
# dates" on a question about Germany), so the header says a fact is for the questions it is about
FACTS_HEADER = "Facts about this database (use a fact only for a question it is about):"
FACT_CHARS = (12, 400)  # a code table of seven codes fits


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
# a value, or how values are stored: a quoted literal, a number, a code in capitals, units and case words
_VALUE = re.compile(r"'[^']+'|\d|\b[A-Z]{2,}\b|\"(?![a-z_]+\")[^\"\s]+\"")
# SQL's own words in capitals are not codes: "use WHERE to filter" names no value
_SQL_WORDS = re.compile(r"\b(?:SQLite|SQL|SELECT|FROM|WHERE|AND|OR|NOT|IN|IS|NULL|LIKE|BETWEEN|GROUP|BY|ORDER|"
                        r"HAVING|LIMIT|JOIN|ON|AS|DISTINCT|COUNT|SUM|AVG|MIN|MAX|CASE|WHEN|THEN|ELSE|END|UNION|"
                        r"ASC|DESC|CAST|INTEGER|TEXT|REAL)\b")
_STORAGE = re.compile(r"\b(?:cents?|dollars?|capitals?|upper-?case|lower-?case|integers?)\b", re.IGNORECASE)
# a sentence about the one mistake ("the correct query uses price_cents > 20000 to ...") is no fact about the data
_ABOUT_THE_MISTAKE = re.compile(r"\b(?:correct|wrong) (?:query|answer)\b|\bthe question\b", re.IGNORECASE)


def parse_fact(text: str) -> str | None:
    """The fact in a reply: its first sentence that names a value, without the lead-in the request invites (and
    with the first sentence before it when that one says which column: "The column status_code stores the status
    of each order. Its values are 'D' for delivered, ..."); None when unusable.

    A fact must name a value (a quoted literal, a number, a code in capitals): one that only restates the
    schema ("customers are stored in a table named customers") tells the task model nothing new."""
    fact = (text or "").strip().split("\n", 1)[0].strip().strip('"').strip()
    for lead in _FACT_LEADS:
        if fact.lower().startswith(lead):
            fact = fact[len(lead):].strip()
    sentences = [s.strip() for s in _SENTENCE_END.split(fact)]
    at = next((i for i, s in enumerate(sentences) if not _ABOUT_THE_MISTAKE.search(s)
               and (_VALUE.search(_SQL_WORDS.sub("", s)) or _STORAGE.search(s))), None)
    fact = "" if at is None else sentences[at]
    if at and sentences[0].lower().startswith("the column ") and not _ABOUT_THE_MISTAKE.search(sentences[0]):
        fact = sentences[0] + " " + fact
    fact = _COLUMN_NAMED.sub(r"\1\2", fact)  # "the column `price_cents`" and "the column price_cents" are one column
    if not FACT_CHARS[0] <= len(fact) <= FACT_CHARS[1]:
        return None
    return fact[0].upper() + fact[1:]


def fits_column(fact: str, stored: str) -> bool:
    """Whether a fact about a column, given how the column stores its values (`stored`, from `describe_values`;
    "" when unknown), tells a small task model something it can use: about short codes it must say what one
    means (`explains_codes`); about a column of words (cities, regions) it must quote none of them: its values
    need no explaining, only their format, and an example gets copied (with "'TOKYO' is represented by 'TOKYO'"
    in its instructions the 0.5B answered questions about Paris and Berlin with 'TOKYO'; benchmarks/README.md)."""
    codes = codes_of(stored)
    if f" {SUCH_VALUES}" in stored or (codes and all(len(c) > CRYPTIC_CHARS for c in codes)):
        return not _QUOTED_VALUE.search(fact)
    return explains_codes(fact, codes)


_QUOTED_VALUE = re.compile(r"(?<!\w)(['\"])[^'\"]+\1(?!\w)")  # 'OSLO' or "Oslo", not the apostrophe in order's


def codes_of(stored: str) -> list[str]:
    """The codes a coded column holds, read from `describe_values`'s "holds only these values: 'D', 'EL' (e.g.
    'Wireless Mouse'), ..." ([] for any other column)."""
    _, found, listed = stored.partition(ONLY_VALUES)
    return [c.replace("''", "'") for c in _QUOTED.findall(_EXAMPLE.sub("", listed))] if found else []


def explains_codes(fact: str, codes: list[str]) -> bool:
    """Whether a fact says what at least one of a coded column's `codes` means ("'D' for 'Delivered'", "'N'
    stands for not a member", "books ('BK')"). The column request asks exactly that; a reply that lists the codes
    and no meaning ("the values 'EL', 'BK', ... each represent a category") tells the task model nothing new,
    and a 0.5B task model copies the listed codes into questions they do not fit. Only short codes (three
    characters or fewer: 'D', 'EL', 'GB') need a meaning; a column of words ('NORTH', 'OSLO') needs none."""
    cryptic = [code for code in codes if len(code) <= CRYPTIC_CHARS]
    for code in cryptic:
        quoted = rf"['\"`]{re.escape(code)}['\"`]"
        if re.search(quoted + _MEANING_AFTER, fact, re.IGNORECASE) or re.search(_MEANING_BEFORE + quoted, fact):
            return True
    return not cryptic


CRYPTIC_CHARS = 3
_QUOTED = re.compile(r"'((?:[^']|'')*)'")
_EXAMPLE = re.compile(r"\s*\(e\.g\. '(?:[^']|'')*'\)")
_GENERIC = r"(?:each|one|some|any|specific|different|unique|certain|particular|value|values|code|codes)\b"
# after a code: "for", "stands for", "means", "=", ":" and then a word that is not generic ("'D' for delivered")
_MEANING_AFTER = (r"\s*\)?,?\s*(?:for|stands?\s+for|means?|represents?|denotes?|indicates?|is|=|:|->|→)\s+"
                  rf"(?!(?:an?|the)\s+{_GENERIC})(?:an?\s+|the\s+)?['\"]?(?!{_GENERIC})[A-Za-z]")
# before a code: "books ('BK')", "Delivered = 'D'" (not "such as 'EL'", "values 'D'")
_MEANING_BEFORE = r"\b(?!(?:as|like|are|include|includes|and|or|is|values?|codes?)\b)[A-Za-z]{3,}['\"]?\s*(?:\(|=|:)\s*"


_COLUMN_NAMED = re.compile(r"^(the column )[`'\"]?(\w+)[`'\"]?", re.IGNORECASE)


def fact_column(fact: str) -> str | None:
    """The column a fact is about when it begins "The column NAME" (the column request's replies), lower-cased."""
    m = _COLUMN_NAMED.match(fact.lstrip("- "))
    return m.group(2).lower() if m else None


def described_columns(instructions: str) -> set[str]:
    """The columns the instructions' facts describe (lines that begin "The column NAME"), lower-cased."""
    return {c for c in map(fact_column, instructions.splitlines()) if c}


def with_facts(instructions: str, facts: list[str]) -> str:
    """The instructions with each new fact appended as a bullet under `FACTS_HEADER` (added with the first fact;
    facts already there, repeated, or about a column a fact already describes are skipped)."""
    have = _fact_key(instructions)
    described = described_columns(instructions)
    new: list[str] = []
    for fact in facts:
        key, column = _fact_key(fact), fact_column(fact)
        if key and key not in have and key not in (_fact_key(f) for f in new) and column not in described:
            new.append(fact)
            if column:  # one fact per column: the first one stays
                described.add(column)
    if not new:
        return instructions
    header = "" if FACTS_HEADER in instructions else "\n" + FACTS_HEADER
    return instructions.rstrip() + header + "\n" + "\n".join(f"- {f}" for f in new)


def facts_identity(instructions: str) -> str:
    """What makes two sets of instructions the same edit in the facts request: the text before the facts and
    the facts as a set (the same facts appended in another order are no new edit)."""
    base, header, facts = instructions.partition(FACTS_HEADER)
    if not header:
        return normalize(instructions)
    bullets = sorted({_fact_key(line.lstrip("- ")) for line in facts.splitlines() if line.strip()})
    return normalize(base) + "\n" + "\n".join(bullets)


def _fact_key(text: str) -> str:
    """What makes two facts the same: case, spacing and the quotes around names do not."""
    return normalize(re.sub(r"[`\"]", "'", text)).lower()


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


# -- TextGrad-style baseline ---------------------------------------------------------------------------------
_CRITIQUE_RE = re.compile(r"<critique>(.*?)</critique>", re.IGNORECASE | re.DOTALL)


def build_critique_chat(instructions: str, failure: str) -> Chat:
    """Ask for a short critique of the instructions from one failure (TextGrad's per-instance feedback)."""
    user = prompts.CRITIC_USER.format(instructions=instructions.strip(), failure=failure.strip())
    return [{"role": "system", "content": prompts.CRITIC_SYSTEM}, {"role": "user", "content": user}]


def parse_critique(text: str) -> str:
    """The critique in the reply (its last <critique> block, else the whole reply), clipped."""
    found = _CRITIQUE_RE.findall(text or "")
    critique = " ".join((found[-1] if found else text or "").split())
    return critique if len(critique) <= CRITIQUE_CHARS else critique[: CRITIQUE_CHARS - 2] + " …"


def aggregate_critiques(critiques: list[tuple[str, str]], n_problems: int) -> str:
    """The feedback the TextGrad-style edit sees: the batch accuracy and every non-empty critique, numbered."""
    failed = len(critiques)
    head = f"Accuracy: {n_problems - failed}/{n_problems} on the feedback batch."
    kept = [(pid, c) for pid, c in critiques if c]
    if not kept:
        return head + "\nNo critiques: keep what works and make the instructions clearer."
    lines = [f"{i}. [{pid}] {c}" for i, (pid, c) in enumerate(kept, start=1)]
    return head + f"\nCritiques of the instructions from the {failed} failures:\n" + "\n".join(lines)


def build_textgrad_chat(instructions: str, critiques: str) -> Chat:
    """One edit from the aggregated critiques (TextGrad's optimizer step)."""
    user = prompts.OPTIMIZER_USER.format(instructions=instructions.strip(), critiques=critiques.strip())
    return [{"role": "system", "content": prompts.OPTIMIZER_SYSTEM}, {"role": "user", "content": user}]
