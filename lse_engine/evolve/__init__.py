"""Tree-guided evolution (DESIGN §2): nodes and selection, feedback, the evolver, the search loop."""
