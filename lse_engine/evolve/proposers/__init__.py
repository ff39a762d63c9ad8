"""What the evolver is asked, one strategy per request kind (`Proposer`), and the registry that picks one.
Adding a kind: one module here and one line in `PROPOSERS`."""

from __future__ import annotations

from lse_engine.config import EvolveConfig
from lse_engine.evolve.proposers.base import (
    Candidate,
    Feedback,
    InstructionsProposer,
    Proposer,
    ProposerContext,
    Request,
    request_from_record,
    request_record,
)
from lse_engine.evolve.proposers.compact import CompactProposer
from lse_engine.evolve.proposers.facts import FactsProposer
from lse_engine.evolve.proposers.reference import ReferenceProposer
from lse_engine.evolve.proposers.textgrad import TextGradProposer

__all__ = ["PROPOSERS", "Candidate", "Feedback", "InstructionsProposer", "Proposer", "ProposerContext",
           "Request", "proposer_for", "proposer_kind", "request_from_record", "request_record"]

PROPOSERS: dict[str, type[Proposer]] = {
    "reference": ReferenceProposer,
    "compact": CompactProposer,
    "facts": FactsProposer,
    "textgrad": TextGradProposer,
}


def proposer_kind(settings: EvolveConfig) -> str:
    """The request kind a run's settings ask for: the `textgrad` rule brings its own, else `request`."""
    return "textgrad" if settings.rule == "textgrad" else settings.request


def proposer_for(settings: EvolveConfig) -> Proposer:
    return PROPOSERS[proposer_kind(settings)]()
