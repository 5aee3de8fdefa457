"""Which clients train in which round: uniform draws, and the schedule that keeps rounds full when
client budgets bind.

Both are pure functions of integers (the run's seed, the round, the federation's shape): they read
no data and consume no global random stream, so a client's privacy analysis depends on its own
ledger only, and the simulator (:mod:`lalora_lite.federated`) and the Flower server
(:mod:`lalora_lite.flower`) draw the same clients.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def sample_clients(seed: int, round_index: int, num_clients: int, k: int) -> list[int]:
    """``k`` of ``num_clients`` clients drawn uniformly without replacement for round ``round_index``
    (0-based), in increasing order: a pure function of ``(seed, round)`` that consumes no global
    random stream. :func:`client_schedule` makes the same draw while no client's budget binds."""
    chosen = np.random.default_rng([seed, round_index]).choice(num_clients, k, replace=False)
    return sorted(int(i) for i in chosen)


def _fillable(left: np.ndarray, rounds: int, k: int) -> int:
    """Most client-rounds that ``rounds`` rounds of at most ``k`` distinct clients can hold when
    client ``i`` may train ``left[i]`` more rounds: ``min(k T, sum_i min(left_i, T))`` (McNaughton's
    wrap-around filling attains it)."""
    return min(k * rounds, int(np.minimum(left, rounds).sum()))


@lru_cache(maxsize=64)
def client_schedule(
    seed: int, rounds: int, num_clients: int, k: int, rounds_per_client: int
) -> tuple[tuple[int, ...], ...]:
    """The clients of every round when each client's budget covers ``rounds_per_client`` rounds.

    Round ``t`` draws ``k`` clients uniformly without replacement among those with budget left
    (all of them if fewer), with a generator seeded by ``(seed, t)``, and redraws while a draw
    would leave fewer client-rounds fillable than before (e.g. two clients left with budget for
    several rounds each, but one round to share). Rounds therefore stay full while the budgets
    allow, and no client is picked to sit idle. The draws depend on earlier draws only, never on
    data, so each client's privacy analysis (its own ledger) is unchanged; while no budget binds
    round ``t`` is exactly :func:`sample_clients` ``(seed, t)``. The simulator and the Flower server
    (:mod:`lalora_lite.flower`) both use it.
    """
    left = np.full(num_clients, rounds_per_client)
    schedule = []
    for t in range(rounds):
        rng = np.random.default_rng([seed, t])
        eligible = np.flatnonzero(left > 0)
        size = min(k, len(eligible))
        best = _fillable(left, rounds - t, k)
        for _ in range(1000):
            chosen = rng.choice(eligible, size, replace=False)
            after = left.copy()
            after[chosen] -= 1
            if size + _fillable(after, rounds - t - 1, k) == best:
                break
        else:  # never seen in practice; the clients with the most budget left keep the schedule full
            chosen = eligible[np.argsort(-left[eligible], kind="stable")[:size]]
        left[chosen] -= 1
        schedule.append(tuple(sorted(int(i) for i in chosen)))
    return tuple(schedule)
