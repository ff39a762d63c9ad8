"""Selection rules on a SIMULATED prompt landscape: tree (ucb) against chain and best, under one call budget.

This is a simulation, not a measurement of any language model. It checks the paper's claim about the
search itself (arXiv 2603.18620): the tree keeps its gains where the linear chain collapses after a bad edit.

The landscape. There are 12 useful skills (some needed far more often than others: weights ∝ 1/rank^0.7)
and 8 harmful ones. Each problem needs 1–3 useful skills. A prompt's instructions carry a set of skills.
The simulated task model answers a problem correctly with probability

    p = 0.05 + (0.90 − 0.05) · 0.35^missing · 0.70^harmful

(`missing`: needed skills absent from the prompt; `harmful`: harmful skills present), one Bernoulli draw per
answer. The root carries 3 random useful skills. A simulated evolver call reads the node's feedback batch
and makes one edit: with p = 0.45 it adds a needed skill (one a failed feedback problem lacks; 20 % of the
time a random missing one instead: a misdiagnosis), with p = 0.25 it adds a harmful skill, with p = 0.30 it
drops a random skill; 5 % of replies are malformed and retried (each try is a call, at most 3, as in the
engine). True accuracy is a prompt's noise-free expected accuracy on 4,000 problems from the same
distribution; the best reachable (all useful skills, no harmful one) is 0.90 exactly, from the formula.

The loop is the engine's own `Search` (`lse_engine/evolve/search.py`) with an in-memory `RunRecorder`: the
simulated task model is its scorer, the simulated evolver sits behind a `SimulatedProposer` (the request carries
the node's skills and the needs of the batch's failures; replies are `<prompt>…</prompt>` parsed by the engine's
parser, so malformed replies and edits already in the tree are retried as in a real run). Each round selects a
node, scores it on a feedback batch of 10 train problems, asks the evolver and scores the child on a fixed dev
set of 50. Model calls are counted as the engine counts them: one per problem answered (an answer already given
by that prompt is cached and free), one per evolver call; a round starts only while calls < budget. Every rule
sees the same landscapes, splits and batches per seed.
Two diagnostic rows explain the ucb result: ucb with c = 0.5, and ucb with `1 + selections` as the visit
count (the engine, like the reference code lse/core/tree.py, divides by max(1, selections); an earlier
engine version divided by 1 + selections, which made the tree expand its newest node almost every round).
`--strict` exits 1 when the chain-collapse claim is not reproduced.

    python benchmarks/bench_landscape.py [--quick] [--strict] [--seeds N] [--budget CALLS] [--rules ucb,chain,best]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from lse_engine.config import MAX_ROUNDS, EvolveConfig
from lse_engine.evolve.context import ProgressFn, SearchContext
from lse_engine.evolve.proposers import Feedback, InstructionsProposer, ProposerContext, Request
from lse_engine.evolve.recorder import MemoryRecorder
from lse_engine.evolve.search import Search
from lse_engine.evolve.tree import Node, Tree
from lse_engine.kinds import RULES
from lse_engine.llm.base import Chat, Completion, Sampling
from lse_engine.progress import ProgressEvent
from lse_engine.tasks.base import Outcome, Problem, Task

RESULTS = Path(__file__).parent / "results"
N_SKILLS, N_HARMFUL, ROOT_SKILLS = 12, 8, 3
P_MAX, P_FLOOR, MISS, HARM = 0.90, 0.05, 0.35, 0.70
P_ADD, P_HARMFUL = 0.45, 0.25  # the rest (0.30) drops a skill
P_MISDIAGNOSE, P_MALFORMED = 0.20, 0.05  # a malformed reply is retried (the engine's evolver_retries = 2)
N_TRAIN, N_POPULATION = 150, 4_000
SETTINGS = EvolveConfig()  # batch_size 10, dev_size 50, c = 2.0: the engine's defaults
BEST_REACHABLE = P_MAX  # every problem at p(missing=0, harmful=0)
SIMULATED_RULES = tuple(r for r in RULES if r != "textgrad")  # textgrad's critique calls are not simulated
_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int8)


def popcount(x: np.ndarray) -> np.ndarray:
    """Bits set in each (< 2^16) integer."""
    return _POP8[x & 0xFF] + _POP8[(x >> 8) & 0xFF]


def p_correct(needs: np.ndarray, useful: int, harmful: int) -> np.ndarray:
    """The simulated task model's chance of answering each problem right with this prompt."""
    missing = popcount(needs & ~useful & ((1 << N_SKILLS) - 1))
    h = bin(harmful).count("1")
    return P_FLOOR + (P_MAX - P_FLOOR) * MISS ** missing * HARM ** h


def draw_needs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Each problem needs 1–3 distinct useful skills; popular skills are needed more often.

    Weighted sampling without replacement by the Gumbel top-k trick, vectorised over problems.
    """
    log_w = -0.7 * np.log(np.arange(1, N_SKILLS + 1))
    keys = log_w + rng.gumbel(size=(n, N_SKILLS))
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)  # 0 = drawn first
    chosen = rank < rng.integers(1, 4, size=(n, 1))
    return (chosen * (1 << np.arange(N_SKILLS))).sum(axis=1).astype(np.int64)


@dataclass
class Landscape:
    """One seed's world: the problems' needs (train, then dev), a population for true accuracy, the root."""

    seed: int
    needs: np.ndarray  # train + dev
    population: np.ndarray
    root_useful: int

    @classmethod
    def draw(cls, seed: int) -> Landscape:
        rng = np.random.default_rng([seed, 7919])
        root = 0
        for s in rng.choice(N_SKILLS, size=ROOT_SKILLS, replace=False):
            root |= 1 << int(s)
        return cls(seed, draw_needs(rng, N_TRAIN + SETTINGS.dev_size), draw_needs(rng, N_POPULATION), root)

    def true_accuracy(self, useful: int, harmful: int) -> float:
        return float(p_correct(self.population, useful, harmful).mean())


SKILL_PREFIX = "skills:"  # a prompt's text: "skills: s0 s4 h2" (never empty, so an edit is always text)


def skills_text(useful: int, harmful: int) -> str:
    names = [f"s{i}" for i in range(N_SKILLS) if useful >> i & 1]
    names += [f"h{i}" for i in range(N_HARMFUL) if harmful >> i & 1]
    return " ".join([SKILL_PREFIX, *names])


def parse_skills(text: str) -> tuple[int, int]:
    useful = harmful = 0
    for word in text.split()[1:]:
        if word[0] == "s":
            useful |= 1 << int(word[1:])
        elif word[0] == "h":
            harmful |= 1 << int(word[1:])
    return useful, harmful


class SimulatedScorer:
    """The task model of the landscape: one Bernoulli draw per (prompt, problem), kept (a cached answer is free);
    every new answer is one model call charged to the run."""

    samples = 1

    def __init__(self, land: Landscape, rng: np.random.Generator, recorder: MemoryRecorder) -> None:
        self.land, self.rng, self.recorder = land, rng, recorder
        self.on_progress: ProgressFn | None = None
        self.answers: dict[str, np.ndarray] = {}

    def with_samples(self, samples: int) -> SimulatedScorer:
        return self  # one answer per (prompt, problem) either way

    def score(self, instructions: str, problems: Sequence[Problem]) -> tuple[list[str], list[Outcome]]:
        cached = self.answers.get(instructions)
        if cached is None:
            cached = self.answers[instructions] = np.full(len(self.land.needs), -1, np.int8)
        idx = np.array([int(p.id) for p in problems], dtype=np.int64)
        todo = np.unique(idx[cached[idx] < 0])
        if len(todo):
            p = p_correct(self.land.needs[todo], *parse_skills(instructions))
            cached[todo] = self.rng.random(len(todo)) < p
            self.recorder.charge(task_calls=len(todo))
        return ([f"{instructions}|{i}" for i in idx],
                [Outcome(str(i), correct=bool(cached[i]), answer="x") for i in idx])


class SimulatedEvolver:
    """The evolver of the landscape: reads the node's skills and its failures from the request and makes one
    edit (module docstring); 5 % of replies are malformed (the search retries them)."""

    model_id = "simulated-evolver"

    def __init__(self, land: Landscape, rng: np.random.Generator) -> None:
        self.land, self.rng = land, rng

    def generate(self, chats: Sequence[Chat], sampling: Sampling) -> list[Completion]:
        return [Completion(self._edit(json.loads(chat[-1]["content"]))) for chat in chats]

    def _edit(self, request: dict[str, Any]) -> str:
        if self.rng.random() < P_MALFORMED:
            return "I am not sure."
        useful, harmful = parse_skills(request["instructions"])
        roll = self.rng.random()
        if roll < P_ADD:
            full = (1 << N_SKILLS) - 1
            failed = [n for n in request["failed_needs"] if n & ~useful & full]
            gap = self.rng.choice(failed) & ~useful if failed and self.rng.random() >= P_MISDIAGNOSE else full & ~useful
            bits = [i for i in range(N_SKILLS) if int(gap) >> i & 1]
            if bits:
                useful |= 1 << int(self.rng.choice(bits))
        elif roll < P_ADD + P_HARMFUL:
            bits = [i for i in range(N_HARMFUL) if not harmful >> i & 1]
            if bits:
                harmful |= 1 << int(self.rng.choice(bits))
        else:
            present = [("u", i) for i in range(N_SKILLS) if useful >> i & 1]
            present += [("h", i) for i in range(N_HARMFUL) if harmful >> i & 1]
            if present:
                kind, i = present[int(self.rng.integers(len(present)))]
                if kind == "u":
                    useful &= ~(1 << i)
                else:
                    harmful &= ~(1 << i)
        return f"<prompt>{skills_text(useful, harmful)}</prompt>"

    def close(self) -> None:
        pass


class SimulatedProposer(InstructionsProposer):
    """The request the simulated evolver reads: the node's skills and the needs of the batch's failures."""

    kind = "simulated"

    def feedback(self, ctx: ProposerContext, node: Node, problems: Sequence[Problem],
                 outcomes: Sequence[Outcome], round_: int) -> Feedback:
        return Feedback(json.dumps([int(p.id) for p, o in zip(problems, outcomes, strict=True) if not o.correct]))

    def request(self, ctx: ProposerContext, node: Node, problems: Sequence[Problem],
                outcomes: Sequence[Outcome], feedback: Feedback) -> Request:
        needs = [int(ctx.task.needs[i]) for i in json.loads(feedback.text)]  # type: ignore[attr-defined]
        content = json.dumps({"instructions": node.instructions, "failed_needs": needs})
        return Request(self.kind, ([{"role": "user", "content": content}],), ctx.sampling)


class LandscapeTask:
    """The landscape as a task: only what the search asks of one (a kind, an agent prompt, no findings)."""

    kind = "simulated"

    def __init__(self, land: Landscape) -> None:
        self.needs = land.needs

    def agent_prompt(self, instructions: str, show_schema: bool = True) -> str:
        return instructions

    def findings(self, problem: Problem, outcome: Outcome) -> list[Any]:
        return []


@dataclass
class Sim:
    """One search (one seed, one rule) over the landscape: the engine's own `Search` with a `MemoryRecorder`,
    the simulated task model as its scorer and the simulated evolver behind the `SimulatedProposer`."""

    land: Landscape
    variant: Variant
    rng: np.random.Generator

    def run(self, budget: int) -> dict[str, Any]:
        train = [Problem(str(i), "", "") for i in range(N_TRAIN)]
        dev = [Problem(str(i), "", "") for i in range(N_TRAIN, N_TRAIN + SETTINGS.dev_size)]
        recorder = MemoryRecorder(tree_factory=self.variant.tree)
        settings = dataclasses.replace(SETTINGS, rule=self.variant.rule, c=self.variant.c, seed=self.land.seed,
                                       rounds=MAX_ROUNDS, max_model_calls=budget, heldout_size=0)
        trajectory: list[tuple[int, float]] = []

        def on_event(ev: ProgressEvent) -> None:
            if not ev.step and "winner" in ev.extra:
                winner = recorder.nodes[ev.extra["winner"]]
                trajectory.append((recorder.spent().calls, self.true(winner["instructions"])))

        ctx = SearchContext(recorder=recorder, scorer=SimulatedScorer(self.land, self.rng, recorder),
                            evolver=SimulatedEvolver(self.land, self.rng), evolver_sampling=Sampling(),
                            task=cast(Task, LandscapeTask(self.land)), train=train, dev=dev, settings=settings,
                            progress=on_event, proposer=SimulatedProposer())
        result = Search(ctx).run(skills_text(self.land.root_useful, 0))
        tree = result.tree
        scored = [n for n in tree.nodes.values() if n.selectable]
        newest = max(scored, key=lambda n: n.id)
        return {
            "rounds": result.rounds_done, "calls": recorder.spent().calls, "winner_dev": result.winner.dev_score or 0.0,
            "winner_true": self.true(result.winner.instructions), "final_true": self.true(newest.instructions),
            "root_true": self.true(tree.root.instructions), "trajectory": trajectory,
            "depth": max(tree.depth(n.id) for n in scored), "newest_share": newest_share(tree),
        }

    def true(self, instructions: str) -> float:
        return self.land.true_accuracy(*parse_skills(instructions))


def newest_share(tree: Tree) -> float:
    """The share of rounds that expanded the newest scored node of their time."""
    hits = 0
    for r, node_id in enumerate(tree.selections, start=1):
        earlier = [n.id for n in tree.nodes.values() if n.selectable and (n.id == 0 or n.round < r)]
        hits += node_id == max(earlier)
    return hits / max(1, len(tree.selections))


class OnePlusVisitsTree(Tree):
    """UCB with the bonus over 1 + selections (the engine's earlier count), not max(1, selections)."""

    def ucb_value(self, node: Node, c: float) -> float:
        n_sel = max(len(self.selections), 1)
        return (node.dev_score or 0.0) + c * math.sqrt(math.log(n_sel) / (1 + node.selected))


@dataclass(frozen=True)
class Variant:
    """A row of the table: a rule of the engine's `Tree.select`, its c, and the tree class."""

    label: str
    rule: str
    c: float = SETTINGS.c
    tree: Callable[[], Tree] = Tree
    diagnostic: bool = False  # not an engine default: shown to explain the others


def calls_to_reach(trajectory: list[tuple[int, float]], target: float) -> int | None:
    """Model calls spent when the winner's true accuracy first reaches `target`."""
    return next((c for c, t in trajectory if t >= target), None)


def summarize(runs: list[dict[str, Any]], target: float) -> dict[str, Any]:
    arr = {k: np.array([r[k] for r in runs]) for k in ("winner_dev", "winner_true", "final_true", "root_true",
                                                       "rounds", "depth", "newest_share")}
    reach = [calls_to_reach(r["trajectory"], target) for r in runs]
    hit = [c for c in reach if c is not None]
    return {
        "seeds": len(runs),
        "winner_dev_mean": float(arr["winner_dev"].mean()), "winner_dev_std": float(arr["winner_dev"].std(ddof=1)),
        "winner_true_mean": float(arr["winner_true"].mean()),
        "winner_true_std": float(arr["winner_true"].std(ddof=1)),
        "final_true_mean": float(arr["final_true"].mean()),
        "root_true_mean": float(arr["root_true"].mean()),
        "final_below_root": float((arr["final_true"] < arr["root_true"]).mean()),
        "winner_below_root": float((arr["winner_true"] < arr["root_true"]).mean()),
        "reached_90pct_best": len(hit) / len(runs),
        "calls_to_90pct_best_median": float(np.median(hit)) if hit else None,
        "calls_to_90pct_best_mean": float(np.mean(hit)) if hit else None,
        "rounds_mean": float(arr["rounds"].mean()), "max_depth_mean": float(arr["depth"].mean()),
        "expanded_newest_share": float(arr["newest_share"].mean()),
    }


def paired(a: list[dict[str, Any]], b: list[dict[str, Any]], key_a: str, key_b: str) -> tuple[float, float]:
    """Mean of a[key_a] − b[key_b] over seeds and its standard error."""
    d = np.array([x[key_a] - y[key_b] for x, y in zip(a, b, strict=True)])
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))


def make_variants(rules: list[str], diagnostics: bool) -> list[Variant]:
    """The compared rules (ucb and chain always), then diagnostic ucb variants that explain them."""
    rules = [r for r in dict.fromkeys(["ucb", "chain", *rules])]
    for r in rules:
        if r not in SIMULATED_RULES:
            raise SystemExit(f"rule {r!r} is not simulated here; choose from {', '.join(SIMULATED_RULES)}")
    out = [Variant(r, r) for r in rules]
    if diagnostics:
        out += [Variant("ucb c=0.5", "ucb", 0.5, diagnostic=True),
                Variant("ucb 1+sel", "ucb", SETTINGS.c, OnePlusVisitsTree, diagnostic=True)]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="60 seeds (smoke test)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the claim is not reproduced")
    ap.add_argument("--seeds", type=int, default=None, help="seeds (default 300; 60 with --quick)")
    ap.add_argument("--budget", type=int, default=3000, help="model calls per search (default 3000)")
    ap.add_argument("--rules", default="ucb,chain,best", help=f"comma-separated, from {', '.join(SIMULATED_RULES)}")
    ap.add_argument("--no-diagnostics", action="store_true", help="leave out the diagnostic ucb variants")
    args = ap.parse_args()
    seeds = args.seeds or (60 if args.quick else 300)
    variants = make_variants([r.strip() for r in args.rules.split(",") if r.strip()], not args.no_diagnostics)
    target = 0.9 * BEST_REACHABLE
    t0 = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {v.label: [] for v in variants}
    for seed in range(seeds):
        land = Landscape.draw(seed)
        for k, v in enumerate(variants):
            runs[v.label].append(Sim(land, v, np.random.default_rng([seed, k, 104729])).run(args.budget))
    elapsed = time.perf_counter() - t0
    table = {label: summarize(rs, target) for label, rs in runs.items()}
    root = table["ucb"]["root_true_mean"]

    print("SIMULATED prompt landscape (no language model): 12 useful + 8 harmful skills; the engine's own Search")
    print("loop over an in-memory recorder, with a simulated task model and evolver (no store, no SQL).")
    print(f"{seeds} seeds × {len(variants)} rows, budget {args.budget} model calls each "
          f"(task answers + evolver calls); "
          f"batch {SETTINGS.batch_size}, dev {SETTINGS.dev_size}, c {SETTINGS.c:g}; best reachable true accuracy "
          f"{BEST_REACHABLE:.2f} (analytic), 90 % of it {target:.3f}; root true {root:.3f}; {elapsed:.1f} s\n")
    head = (f"{'rule':<11}{'winner dev':>13}{'winner true':>13}{'final true':>11}{'final<root':>11}"
            f"{'winner<root':>12}{'reach 90%':>10}{'calls→90%':>10}{'rounds':>7}{'depth':>6}{'newest':>7}")
    print(head)
    print("-" * len(head))
    for v in variants:
        if v.diagnostic and not any(u.diagnostic for u in variants[:variants.index(v)]):
            print("diagnostic (not engine defaults):")
        t = table[v.label]
        calls = f"{t['calls_to_90pct_best_median']:.0f}" if t["calls_to_90pct_best_median"] is not None else "—"
        print(f"{v.label:<11}{t['winner_dev_mean']:>7.3f}±{t['winner_dev_std']:.3f}"
              f"{t['winner_true_mean']:>7.3f}±{t['winner_true_std']:.3f}{t['final_true_mean']:>11.3f}"
              f"{t['final_below_root']:>11.0%}{t['winner_below_root']:>12.0%}{t['reached_90pct_best']:>10.0%}"
              f"{calls:>10}{t['rounds_mean']:>7.1f}{t['max_depth_mean']:>6.1f}{t['expanded_newest_share']:>7.0%}")
    print("winner: the best-dev node (what the engine returns); final: the newest scored node (where a chain ends);\n"
          "true: noise-free expected accuracy; calls→90%: median over seeds that reach it; depth: deepest node;\n"
          "newest: share of rounds that expanded the newest node; ucb c=0.5: smaller exploration constant;\n"
          "ucb 1+sel: bonus over 1 + selections (the engine and the reference use max(1, selections))")

    comparisons: dict[str, tuple[float, float]] = {}
    for v in variants[1:]:
        comparisons[f"ucb winner - {v.label} winner"] = paired(runs["ucb"], runs[v.label], "winner_true",
                                                               "winner_true")
    comparisons["ucb winner - chain final"] = paired(runs["ucb"], runs["chain"], "winner_true", "final_true")
    print("\npaired over seeds (true accuracy; mean Δ ± stderr; |Δ| < 2·stderr is within noise):")
    for name, (d, se) in comparisons.items():
        print(f"  {name:<30} {d:+.3f} ± {se:.3f}{'  (within noise)' if abs(d) < 2 * se else ''}")

    ucb, chain = table["ucb"], table["chain"]
    d_final, se_final = comparisons["ucb winner - chain final"]
    d_win, se_win = comparisons["ucb winner - chain winner"]
    reproduced = d_final > 2 * se_final and chain["final_below_root"] > ucb["winner_below_root"]
    verdict = (f"{'REPRODUCED' if reproduced else 'NOT REPRODUCED'} (simulation): the chain's last prompt ends below "
               f"the root in {chain['final_below_root']:.0%} of seeds (true {chain['final_true_mean']:.3f} vs root "
               f"{root:.3f}) while the tree's answer does in {ucb['winner_below_root']:.0%} (true "
               f"{ucb['winner_true_mean']:.3f}, {d_final:+.3f} ± {se_final:.3f}); against the chain's own "
               f"best-dev node the tree gains {d_win:+.3f} ± {se_win:.3f}; ucb expands the newest node in "
               f"{ucb['expanded_newest_share']:.0%} of rounds.")
    print("\nverdict: " + verdict)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_landscape.json").write_text(json.dumps({
        "simulation": True, "seeds": seeds, "budget_calls": args.budget, "elapsed_s": round(elapsed, 2),
        "rows": [{"label": v.label, "rule": v.rule, "c": v.c, "tree": v.tree.__name__, "diagnostic": v.diagnostic}
                 for v in variants],
        "landscape": {"useful_skills": N_SKILLS, "harmful_skills": N_HARMFUL, "root_skills": ROOT_SKILLS,
                      "p_max": P_MAX, "p_floor": P_FLOOR, "missing_factor": MISS, "harmful_factor": HARM,
                      "p_add_needed": P_ADD, "p_add_harmful": P_HARMFUL, "p_drop": round(1 - P_ADD - P_HARMFUL, 3),
                      "p_misdiagnose": P_MISDIAGNOSE, "p_malformed": P_MALFORMED, "train": N_TRAIN,
                      "dev": SETTINGS.dev_size, "batch": SETTINGS.batch_size, "c": SETTINGS.c},
        "best_reachable_true": BEST_REACHABLE, "target_true": target, "per_rule": table,
        "paired": {k: {"diff": d, "stderr": se} for k, (d, se) in comparisons.items()},
        "reproduced": reproduced, "verdict": verdict,
    }, indent=2))
    return 1 if args.strict and not reproduced else 0


if __name__ == "__main__":
    sys.exit(main())
