"""The race of a confirm stage, as plain tables: each network's confirmed accuracy over its seeds, whether it is
on the confirmed front with confidence, off it with confidence, or still in doubt, and who trains next.

A network is *out* when another, at most as slow, is more accurate beyond the noise of both means (the interval of
the difference at CONFIDENCE lies above 0); *in* when it is more accurate beyond the noise than every network at
most as slow; otherwise it is in doubt, and only then does it get another seed (F-Race's idea: spend the
trainings where they still decide something). The noise is the pooled seed std of the confirm trainings.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...errors import FatnasError
from ...runs.noise import Z, pooled_std
from ...runs.store import pareto_mask

IN, OUT, DOUBT = "on the front", "off the front", "in doubt"
MIN_SEEDS = 2  # every network's first seeds: a pooled seed std needs repeats
MAX_SEEDS = 5
_UNITS = {"s": 1, "m": 60, "h": 3600}
BUDGET_FORMS = "a training time such as 600s, 20m or 1.5h (seconds of training, summed), or a count such as 12trainings"


@dataclass(frozen=True)
class ConfirmBudget:
    """What a confirm stage may spend: seconds of training (summed over trainings) or a number of trainings."""

    seconds: float | None = None
    trainings: int | None = None

    def spent(self, seconds: float, trainings: int) -> bool:
        """Whether a stage that has trained `trainings` times for `seconds` in all may start no other training."""
        if self.seconds is not None:
            return seconds >= self.seconds
        return self.trainings is not None and trainings >= self.trainings

    def describe(self) -> str:
        return f"{self.seconds:g} s of training" if self.seconds is not None else f"{self.trainings} trainings"


def parse_confirm_budget(text: str) -> ConfirmBudget:
    """'600s', '20m', '1.5h' or '12trainings' (also '12'); anything else is a one-line error naming the forms."""
    words = str(text).strip().lower().replace(" ", "")
    time_match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh])", words)
    count_match = re.fullmatch(r"(\d+)(?:trainings?)?", words)
    if time_match and 0 < float(time_match.group(1)) * _UNITS[time_match.group(2)] < 1e9:
        return ConfirmBudget(seconds=float(time_match.group(1)) * _UNITS[time_match.group(2)])
    if count_match and 0 < int(count_match.group(1)) <= 100_000:
        return ConfirmBudget(trainings=int(count_match.group(1)))
    raise FatnasError(f"confirm budget {text!r}: accepted {BUDGET_FORMS}")


def standings(rows: pd.DataFrame, networks: pd.DataFrame, max_seeds: int = MAX_SEEDS) -> pd.DataFrame:
    """Per network of `networks` (network, latency_ms, ...): its seeds, mean accuracy, the std of that mean, its
    interval, its status (IN, OUT, DOUBT) and whether it is on the confirmed front; `rows` holds the trainings."""
    table = networks.copy()
    counts = rows.groupby("network")["accuracy"].count() if not rows.empty else pd.Series(dtype=int)
    means = rows.groupby("network")["accuracy"].mean() if not rows.empty else pd.Series(dtype=float)
    table["seeds"] = [int(counts.get(n, 0)) for n in table["network"]]
    table["accuracy"] = [float(means.get(n, math.nan)) for n in table["network"]]
    seed_std = pooled_std(rows)[0] if not rows.empty else None
    table["seed_std"] = seed_std if seed_std is not None else math.nan
    table["accuracy_std"] = table["seed_std"] / table["seeds"].clip(lower=1) ** 0.5
    table["accuracy_low"] = table["accuracy"] - Z * table["accuracy_std"]
    table["accuracy_high"] = table["accuracy"] + Z * table["accuracy_std"]
    table["status"] = statuses(table) if seed_std is not None else DOUBT
    table.loc[table["seeds"] == 0, "status"] = DOUBT  # not trained yet
    trained = table["seeds"] > 0
    table["on_confirmed_front"] = False
    if trained.any():
        table.loc[trained, "on_confirmed_front"] = pareto_mask(table[trained])
    table["max_seeds"] = max_seeds
    return table


def statuses(table: pd.DataFrame) -> list[str]:
    """IN, OUT or DOUBT per row of a `standings` table (its accuracy, accuracy_std and latency_ms)."""
    acc = table["accuracy"].to_numpy(float)
    lat = table["latency_ms"].to_numpy(float)
    std = table["accuracy_std"].to_numpy(float)
    spread = Z * np.hypot(std[:, None], std[None, :])  # [a, b]
    faster = lat[:, None] <= lat[None, :]  # a at most as slow as b
    np.fill_diagonal(faster, False)
    beaten = (faster & (acc[:, None] - acc[None, :] > spread)).any(axis=0)
    clear = (~faster | (acc[None, :] - acc[:, None] > spread)).all(axis=0)  # b beats every a at most as slow
    return [OUT if b else IN if c else DOUBT for b, c in zip(beaten, clear)]


def next_seeds(table: pd.DataFrame, min_seeds: int = MIN_SEEDS, max_seeds: int = MAX_SEEDS) -> list[str]:
    """The networks that train next, one seed each: those below `min_seeds`, else those still in doubt and
    below `max_seeds` (empty: the race is decided, or no doubt can be settled within `max_seeds`)."""
    short = table[table["seeds"] < min_seeds]
    if not short.empty:
        return list(short["network"])
    doubt = table[(table["status"] == DOUBT) & (table["seeds"] < max_seeds)]
    return list(doubt["network"])


__all__ = ["BUDGET_FORMS", "DOUBT", "IN", "MAX_SEEDS", "MIN_SEEDS", "OUT", "ConfirmBudget", "next_seeds",
           "parse_confirm_budget", "standings", "statuses"]
