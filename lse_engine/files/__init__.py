"""The user's files, one module per format: prompt files (`prompt_file`) and suites (`suite_file`)."""

from lse_engine.files.issues import Issue, Span
from lse_engine.files.prompt_file import PromptFile, load_prompt, parse_prompt
from lse_engine.files.suite_file import Suite, load_suite, parse_suite

__all__ = ["Issue", "PromptFile", "Span", "Suite", "load_prompt", "load_suite", "parse_prompt", "parse_suite"]
