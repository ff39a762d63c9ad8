"""`lse bench`: the paper's protocol on real benchmarks (BIRD, Spider, MMLU-Redux) with its baselines.

`suites` imports a benchmark and splits it, `workspace` gives runs one store, shared models and fair call
accounting, `protocol` runs or resumes every (database, evolver, rule, seed), `curves` and `stats` turn the
store into dev-vs-calls curves and noise-aware comparisons, `report` writes the table, JSON and plot.
"""
