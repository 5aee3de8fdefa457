"""The hyper-parameter search of the comparison: a log-spaced grid per method and budget.

Every method gets, at every privacy budget, the same starting grid of learning rates x clip
norms (log-spaced, e.g. 3 x 3) and the same rule:

1. run every grid point (validation split, the search seed, the final runs' length);
2. score a run by its mean validation accuracy over its last ``SCORE_LAST`` evaluations
   (steadier than the last one alone);
3. scores within one binomial standard error of the best, ``sqrt(p (1 - p) / n_val)``, are ties
   (the validation split cannot tell them apart); among ties the point farthest from the grid's
   edges wins (then the higher score, then grid order). Under DP-SGD with every example clipped,
   only ``lr x C`` matters, so good points lie on a diagonal ridge of the grid and an edge point often
   wins by a hair: without the tie rule the grid would widen along the ridge for nothing;
4. if the chosen point lies on an edge of its grid (the smallest or largest learning rate or clip
   norm), add one more log-step on that side and go to 1, at most ``max_widen`` times per side;
5. keep the chosen point; one still on an edge after that is flagged (``on_edge``) in
   ``chosen.csv`` and in the summary.

Non-private methods have no clip norm: their grid is the learning rates alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

SCORE_LAST = 2  # evaluations averaged into a search run's score


def log_step(values: tuple[float, ...]) -> float:
    """The ratio between neighbouring grid values (the grid must be log-spaced)."""
    if len(values) < 2:
        return 2.0
    ratios = [b / a for a, b in zip(values, values[1:])]
    if min(ratios) <= 1 or max(ratios) / min(ratios) > 1.01:
        raise ValueError(f"grid {values} is not increasing and log-spaced (ratios {ratios})")
    return ratios[0]


def check_grid(name: str, values: tuple[float, ...]) -> None:
    """A grid axis must be non-empty, positive and log-spaced (:func:`log_step`)."""
    if not values or min(values) <= 0:
        raise ValueError(f"{name} must be a non-empty tuple of positive values, got {values}")
    log_step(values)


def widened(values: tuple[float, ...], side: str) -> tuple[float, ...]:
    """``values`` with one more log-step below (``side="low"``) or above (``"high"``), rounded to 4 digits."""
    step = log_step(values)
    if side == "low":
        return (float(f"{values[0] / step:.4g}"), *values)
    return (*values, float(f"{values[-1] * step:.4g}"))


def score(history: pd.DataFrame) -> float:
    """Mean accuracy over the last :data:`SCORE_LAST` evaluated rounds of one run."""
    evaluated = history.dropna(subset=["accuracy"]).sort_values("round")
    return float(evaluated["accuracy"].tail(SCORE_LAST).mean())


@dataclass
class GridSearch:
    """The search for one method at one budget: its grid, the widenings so far and the scores."""

    method: str
    epsilon: float | None
    lrs: tuple[float, ...]
    clips: tuple[float, ...]
    max_widen: int = 2
    val_size: int = 0  # validation examples behind a score (0: no tie tolerance)
    widenings: dict[str, int] = field(default_factory=dict)  # "lr-low" -> times widened
    scores: dict[tuple[float, float], float] = field(default_factory=dict)

    def points(self) -> list[tuple[float, float]]:
        return [(lr, clip) for lr in self.lrs for clip in self.clips]

    def pending(self) -> list[tuple[float, float]]:
        """Grid points without a score yet."""
        return [p for p in self.points() if p not in self.scores]

    def tolerance(self) -> float:
        """One binomial standard error of the top score on ``val_size`` examples (0 without them)."""
        top = max(self.scores[p] for p in self.points())
        return math.sqrt(max(top * (1 - top), 0.0) / self.val_size) if self.val_size else 0.0

    def _inwardness(self, point: tuple[float, float]) -> int:
        """Grid steps from the point to the nearest edge, summed over the axes with more than one value."""
        steps = 0
        for values, value in ((self.lrs, point[0]), (self.clips, point[1])):
            if len(values) > 1:
                i = values.index(value)
                steps += min(i, len(values) - 1 - i)
        return steps

    def best(self) -> tuple[float, float]:
        """The chosen point: among points within :meth:`tolerance` of the top score, the most interior
        one, then the higher score, then the first in grid order."""
        points = self.points()
        top, tol = max(self.scores[p] for p in points), self.tolerance()
        ties = [p for p in points if self.scores[p] >= top - tol]
        return max(ties, key=lambda p: (self._inwardness(p), self.scores[p], -points.index(p)))

    def edges(self) -> list[str]:
        """The edges (``"lr-low"``, ``"clip-high"``, ...) the chosen point lies on; an axis with one
        value (the clip norm of a non-private method) has none."""
        lr, clip = self.best()
        found = []
        for axis, values, value in (("lr", self.lrs, lr), ("clip", self.clips, clip)):
            if len(values) > 1 and value == values[0]:
                found.append(f"{axis}-low")
            if len(values) > 1 and value == values[-1]:
                found.append(f"{axis}-high")
        return found

    def widen(self) -> bool:
        """Widen every edge the chosen point lies on (within ``max_widen``); ``True`` if anything changed."""
        changed = False
        for edge in self.edges():
            if self.widenings.get(edge, 0) >= self.max_widen:
                continue
            axis, side = edge.split("-")
            if axis == "lr":
                self.lrs = widened(self.lrs, side)
            else:
                self.clips = widened(self.clips, side)
            self.widenings[edge] = self.widenings.get(edge, 0) + 1
            changed = True
        return changed

    def chosen_row(self) -> dict:
        lr, clip = self.best()
        return {
            "method": self.method,
            "epsilon": math.inf if self.epsilon is None else self.epsilon,
            "lr": lr,
            "clip_norm": clip,
            "score": self.scores[(lr, clip)],
            "search_runs": len(self.scores),
            "tolerance": self.tolerance(),
            "lr_grid": " ".join(f"{v:g}" for v in self.lrs),
            "clip_grid": " ".join(f"{v:g}" for v in self.clips),
            "widenings": sum(self.widenings.values()),
            "on_edge": " ".join(self.edges()),
        }
