"""Importers: public benchmarks (BIRD, Spider, MMLU-Redux) -> suites and starting prompt files."""

from __future__ import annotations

from lse_engine.importers.bird import import_bird
from lse_engine.importers.mmlu_redux import import_mmlu_redux
from lse_engine.importers.spider import import_spider
from lse_engine.importers.write import ImportResult

__all__ = ["ImportResult", "import_bird", "import_mmlu_redux", "import_spider"]
