"""LSE engine: tree-guided self-evolution of prompts (arXiv 2603.18620). No LSP code lives here."""

__version__ = "0.1.0"
