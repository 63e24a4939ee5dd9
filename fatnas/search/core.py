"""What every search backend shares beyond one candidate: the target and why a search stops, cost
bands and the early-stopping rule on them, and the progress bar.

Each backend is an adapter: it draws candidates and runs `evaluate.py`'s price -> time -> train
in its own way, then asks `StopRule` whether to go on and `MedianStopper` (Optuna) or
`MedianScheduler` (Ray, the same rule) whether to stop a trial early.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from ..errors import FatnasError
from ..runs.store import pareto_front
from .evaluate import SearchSettings, price, time_candidate

TRAINED = ("COMPLETE", "PRUNED")  # trials.csv states of trials that trained (PRUNED: stopped early)
MAX_INFEASIBLE_DRAWS = 5000  # over-budget draws in a row before a search gives up on the space
BLIND_DRAWS = 5  # over-budget draws in a row, with no feasible one in the study, before the space is priced
PRICED_DRAWS = 5000  # random networks priced analytically (no trial, about 0.3 ms each) to find one that fits
MAX_CONSECUTIVE_FAILURES = 5  # trials in a row that raised before a search stops


def cost_band(flops: int) -> int:
    """The FLOPs band of a network, [2^k, 2^(k+1)): early stopping compares only networks of one band."""
    return math.floor(math.log2(max(flops, 1)))


class MedianStopper:
    """Stop a trial whose accuracy at a checkpoint is below the median of its cost peers there.

    Cost is known before training, so comparing accuracy among trials of one FLOPs band
    (`cost_band`) is sound for a two-objective search: a cheap network is never stopped for
    losing to expensive ones. No trial stops before `min_progress` of its training (early
    accuracies are mostly noise), nor at its final checkpoint, nor with fewer than `min_peers`
    earlier peers at that checkpoint.
    """

    def __init__(self, min_peers: int = 4, min_progress: float = 0.5) -> None:
        self.min_peers, self.min_progress = min_peers, min_progress

    def should_stop(self, flops: int, checkpoint: int, accuracy: float,
                    finished: list[tuple[int, list[tuple[int, float]]]], checkpoints: int) -> bool:
        """`checkpoint` counts from 0 of `checkpoints`; `finished` holds (flops, curve) of earlier trained trials."""
        if checkpoint >= checkpoints - 1 or (checkpoint + 1) / checkpoints < self.min_progress:
            return False
        band = cost_band(flops)
        peers = [curve[checkpoint][1] for f, curve in finished if len(curve) > checkpoint and cost_band(f) == band]
        if len(peers) < self.min_peers:
            return False
        return accuracy < statistics.median(peers)


@dataclass
class StopRule:
    """Whether a search may start another trial: target, failures, infeasible streak and timeout."""

    settings: SearchSettings
    started: float = field(default_factory=time.monotonic)

    def reason(self, trained: int, failures: int = 0, infeasible_streak: int = 0) -> str | None:
        """Why no further trial may start (target, failures, infeasible, timeout), or None."""
        if trained >= self.settings.trials:
            return "target"
        if failures >= MAX_CONSECUTIVE_FAILURES:
            return "failures"
        if infeasible_streak >= MAX_INFEASIBLE_DRAWS:
            return "infeasible"
        if self.settings.timeout_s is not None and time.monotonic() - self.started > self.settings.timeout_s:
            return "timeout"
        return None

    def error(self, reason: str | None) -> Exception | None:
        """The error of a search that stopped for `reason` (target and timeout are none)."""
        if reason == "failures":
            return RuntimeError(f"{MAX_CONSECUTIVE_FAILURES} trials in a row failed; see the `error` column of "
                                "trials.csv")
        if reason == "infeasible":
            return FatnasError(f"no candidate out of {MAX_INFEASIBLE_DRAWS} draws from space "
                               f"{self.settings.space.name!r} fits the budget ({self.settings.budget.describe()})")
        return None

    def raise_for(self, reason: str | None) -> None:
        error = self.error(reason)
        if error is not None:
            raise error


def feasible_params(settings: SearchSettings, seed: int) -> dict[str, Any]:
    """The sampler parameters of a random network of the space that fits the analytic budget (to enqueue as the
    next trial); where none of PRICED_DRAWS fits, a FatnasError naming the smallest cost seen, so that a search
    whose budget no network meets stops in seconds instead of drawing for ever."""
    import random

    from ..estimate.cost import format_flops
    from .evaluate import price

    rng = random.Random(seed)
    least_flops = least_params = None
    for _ in range(PRICED_DRAWS):
        params: dict[str, Any] = {}
        cost = price(settings.sampled_space.sample(lambda name, choices: params.setdefault(name, rng.choice(choices))),
                     settings)
        if not cost.infeasible:
            return params
        least_flops = min(least_flops or cost.cost.flops, cost.cost.flops)
        least_params = min(least_params or cost.cost.params, cost.cost.params)
    raise FatnasError(f"no network of space {settings.space.name!r} fits the budget ({settings.budget.describe()}): "
                      f"{PRICED_DRAWS:,} networks priced at random all exceed it; the smallest "
                      f"seen cost {format_flops(least_flops)} and {least_params / 1e6:.3f}M params at "
                      f"{settings.space.resolution}px; raise --budget or pick a smaller --space")


LATENCY_BOUND_SLACK = 1.1  # the fastest network found must miss a latency budget by more than timing noise


def fastest_latency_ms(settings: SearchSettings, seed: int = 0) -> float:
    """A lower bound on the latency any network of the space reaches, at its resolution and the search's own
    timing (table or measurement): the faster of its all-smallest network and the fewest-FLOPs of PRICED_DRAWS
    random ones (analytic prices, only two timed)."""
    import random

    space = settings.sampled_space
    rng = random.Random(seed)
    drawn = (space.sample(lambda name, choices: rng.choice(choices)) for _ in range(PRICED_DRAWS))
    fewest = min(drawn, key=lambda cfg: price(cfg, settings).cost.flops)
    smallest = space.sample(lambda name, choices: min(choices))
    return min(time_candidate(price(cfg, settings), settings).latency_ms for cfg in (smallest, fewest))


def check_latency_reachable(settings: SearchSettings) -> None:
    """A latency budget no network can meet stops the search at once, naming the fastest latency found."""
    limit = settings.budget.max_latency_ms
    if limit is None:
        return
    fastest = fastest_latency_ms(settings, settings.seed)
    if fastest > LATENCY_BOUND_SLACK * limit:
        how = "from the latency table" if settings.latency_model else "measured here"
        raise FatnasError(f"no network of space {settings.space.name!r} meets the latency budget "
                          f"({settings.budget.describe()}): its fastest networks take {fastest:.2f} ms at "
                          f"{settings.space.resolution}px ({how}); raise --budget or pick a smaller --space")


def progress_bar(run_id: str, settings: SearchSettings, *, enabled: bool, done: int = 0) -> tqdm:
    return tqdm(total=settings.trials, initial=min(done, settings.trials), desc=f"search {run_id}", unit="trial",
                disable=not enabled, dynamic_ncols=True)


def show_progress(bar: tqdm, rows: list[dict[str, Any]], target: int) -> None:
    """The bar at the trained count of `rows` (trials.csv rows), with the best trial and the front size."""
    bar.n = min(sum(row["state"] in TRAINED for row in rows), target)
    bar.set_postfix_str(best_text(rows), refresh=True)


def best_text(rows: list[dict[str, Any]]) -> str:
    front = pareto_front(pd.DataFrame(rows))
    if front.empty:
        return "no complete trial yet"
    best = front.loc[front["accuracy"].idxmax()]
    return f"best acc {best['accuracy']:.3f} at {best['latency_ms']:.1f} ms, front {len(front)}"
