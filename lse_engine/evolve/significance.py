"""When one prompt beats another beyond noise, on the same problems.

Two prompts scored on the same dev problems are compared problem by problem (a *paired* comparison): a problem
one answers better than the other is a win or a loss, a tie tells nothing. The **sign test** (for right/wrong
outcomes it is McNemar's exact test) asks how likely at least that many wins are among the untied problems if
neither prompt were better: p = P(Binomial(wins + losses, 1/2) ≥ wins), one-sided.

- The winner: the node with the best dev score becomes the run's answer only when it beats the seed this way at
  level `winner_alpha` (default 0.05), its p-value multiplied by the number of edits that were scored on dev
  (Bonferroni: the best of m edits looks better than each one does); otherwise the seed stays, and the run says why.
- Racing: while a child is scored on dev, chunk by chunk, it stops once it is behind its parent beyond noise
  (the sign test the other way round at `race_alpha`) or can no longer get ahead of it.
- How many dev problems a gain needs (`problems_needed`): with a share ρ of problems answered differently by the
  two prompts, a gain Δ shows at one-sided level α with power 1 − β once n ≥ ((z_α + z_β) / Δ)² · ρ; docs/method.md
  has the table.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

Z = {0.2: 0.8416, 0.1: 1.2816, 0.05: 1.6449, 0.025: 1.96, 0.01: 2.3263}  # one-sided normal quantiles


def sign_test(wins: int, losses: int) -> float:
    """One-sided exact p-value of `wins` against `losses` (ties dropped): P(Bin(wins + losses, 1/2) ≥ wins)."""
    n = wins + losses
    if n == 0:
        return 1.0
    outcomes: int = 2**n
    return min(1.0, sum(math.comb(n, k) for k in range(wins, n + 1)) / outcomes)


def wins_losses(better: Sequence[float], worse: Sequence[float]) -> tuple[int, int]:
    """(problems where `better` scored higher, problems where it scored lower), over the common prefix."""
    pairs = list(zip(better, worse, strict=False))
    return sum(b > w for b, w in pairs), sum(b < w for b, w in pairs)


@dataclass(frozen=True)
class Verdict:
    """Whether a challenger beats a reference on the same problems, and by how much."""

    wins: int
    losses: int
    p: float  # adjusted for the comparisons made (`comparisons`)
    comparisons: int
    alpha: float

    @property
    def beats(self) -> bool:
        return self.wins > self.losses and self.p <= self.alpha

    def words(self) -> str:
        """"11 wins, 2 losses on dev, p = 0.033 (3 edits compared; α 0.05)"."""
        compared = f"{self.comparisons} edits compared; " if self.comparisons > 1 else ""
        return f"{self.wins} wins, {self.losses} losses on dev, p = {self.p:.3g} ({compared}α {self.alpha:g})"


def compare(challenger: Sequence[float], reference: Sequence[float], alpha: float, comparisons: int = 1) -> Verdict:
    """The sign test of `challenger` against `reference` (per-problem scores, same problems, same order)."""
    wins, losses = wins_losses(challenger, reference)
    p = min(1.0, sign_test(wins, losses) * max(1, comparisons))
    return Verdict(wins, losses, p, max(1, comparisons), alpha)


def behind(child: Sequence[float], parent: Sequence[float], remaining: int, alpha: float) -> str | None:
    """Why a child part-way through dev should stop being scored (None: go on): it is behind its parent beyond
    noise (sign test at `alpha`), or even winning every one of the `remaining` problems would not put it ahead."""
    wins, losses = wins_losses(child, parent)
    if wins + remaining <= losses:
        return f"{wins} wins, {losses} losses against its parent with {remaining} problems left: it cannot get ahead"
    p = sign_test(losses, wins)
    if losses > wins and p <= alpha:
        return f"{wins} wins, {losses} losses against its parent after {len(child)} problems (p = {p:.3g})"
    return None


def paired_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95, resamples: int = 4000,
                    seed: int = 0) -> tuple[float, float, float]:
    """Mean of a − b per problem and its bootstrap percentile interval (seeded: the same data give the same
    interval)."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    if not d:
        return 0.0, 0.0, 0.0
    mean = sum(d) / len(d)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(d, k=len(d))) / len(d) for _ in range(resamples))
    lo = means[int((1 - level) / 2 * resamples)]
    hi = means[min(resamples - 1, int((1 + level) / 2 * resamples))]
    return mean, lo, hi


def problems_needed(gain: float, discordant: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Dev problems for a paired sign test at one-sided level `alpha` to see a true gain `gain` (as a share of
    problems) with probability `power`, when a share `discordant` of problems is answered differently."""
    z = Z.get(alpha) or _z(alpha)
    zb = Z.get(1 - power) or _z(1 - power)
    return math.ceil(((z + zb) / gain) ** 2 * discordant)


def _z(tail: float) -> float:
    """The one-sided normal quantile for `tail` (bisection on erfc; only for values outside `Z`)."""
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(mid / math.sqrt(2)) > tail:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
