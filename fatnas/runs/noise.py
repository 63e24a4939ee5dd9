"""How sure a run's accuracies are: an estimator's noise, an interval on each accuracy, the band of networks that
no other network beats with confidence, and each network's difference from the best published FAT under budget.

The noise is the accuracy std of one evaluation (one training seed). A network evaluated `n` times has the std
of its mean, std / sqrt(n). Intervals are two-sided at CONFIDENCE (normal). Network A beats B with confidence
when A is at most as slow and the interval of acc(A) - acc(B) lies above 0; the band is every network that no
other beats so (epsilon-dominance with epsilon from the noise). Latency is taken as exact: its timing noise is
small against the accuracy's.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

CONFIDENCE = 0.9
Z = 1.6448536269514722  # two-sided 90% quantile of the normal distribution
NOISE_FILE = "noise.csv"  # the run's repeated evaluations: network, seed, accuracy
BAND_FILE = "band.csv"  # the networks no other beats with confidence, with intervals and differences
NOISE_COLUMNS = ["network", "trial", "seed", "accuracy", "latency_ms", "train_seconds"]
INTERVAL_COLUMNS = ["accuracy_std", "accuracy_low", "accuracy_high"]
DIFFERENCE_COLUMNS = ["reference", "vs_reference", "vs_reference_low", "vs_reference_high", "verdict"]
INDISTINCT = "not distinguishable"


@dataclass(frozen=True)
class Noise:
    """The accuracy std of one evaluation, where it comes from (`measured`, `fidelity study`, `binomial`), why."""

    std: float
    source: str
    note: str
    networks: int = 0  # networks evaluated with 2+ seeds (measured noise)
    evaluations: int = 0  # their evaluations in all

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Noise | None:
        """run.yaml's `noise` record, or None where the run recorded none (or no std)."""
        if not values or values.get("std") is None:
            return None
        known = {k: values[k] for k in ("std", "source", "note", "networks", "evaluations") if k in values}
        return cls(**known)

    def describe(self) -> str:
        """One sentence for a page or a terminal."""
        return f"accuracy noise: +-{self.std:.4f} per evaluation ({self.source}: {self.note})"


def pooled_std(rows: pd.DataFrame, key: str | list[str] = "network",
               value: str = "accuracy") -> tuple[float | None, int, int]:
    """(pooled within-group std, groups with 2+ values, their values) of `rows`; std None where no group repeats."""
    if rows.empty:
        return None, 0, 0
    groups = [g[value].astype(float) for _, g in rows.dropna(subset=[value]).groupby(key) if len(g) >= 2]
    dof = sum(len(g) - 1 for g in groups)
    if not dof:
        return None, 0, 0
    variance = sum(float(((g - g.mean()) ** 2).sum()) for g in groups) / dof
    return math.sqrt(variance), len(groups), sum(len(g) for g in groups)


def binomial_std(accuracy: float, images: int) -> float:
    """The sampling std of an accuracy measured on `images` images: a lower bound on the noise."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / max(images, 1))


def with_intervals(table: pd.DataFrame, std: float, seeds: str | None = None) -> pd.DataFrame:
    """`table` with the std of each accuracy and its CONFIDENCE interval (`seeds`: a column of evaluations per row)."""
    out = table.copy()
    counts = out[seeds].astype(float).clip(lower=1) if seeds else pd.Series(1.0, index=out.index)
    out["accuracy_std"] = std / counts ** 0.5
    out["accuracy_low"] = out["accuracy"] - Z * out["accuracy_std"]
    out["accuracy_high"] = out["accuracy"] + Z * out["accuracy_std"]
    return out


def beats(a: pd.Series, b: pd.Series) -> bool:
    """Whether network `a` beats `b` with confidence: at most as slow, and acc(a) - acc(b) above 0 at CONFIDENCE."""
    if a["latency_ms"] > b["latency_ms"]:
        return False
    spread = math.hypot(float(a["accuracy_std"]), float(b["accuracy_std"]))
    return float(a["accuracy"]) - float(b["accuracy"]) > Z * spread


def band_mask(table: pd.DataFrame) -> pd.Series:
    """True for rows (with `with_intervals` columns) that no other row beats with confidence (`beats`, vectorized)."""
    acc = table["accuracy"].to_numpy(float)
    lat = table["latency_ms"].to_numpy(float)
    std = table["accuracy_std"].to_numpy(float)
    spread = Z * np.hypot(std[:, None], std[None, :])  # [a, b]
    beaten = (lat[:, None] <= lat[None, :]) & (acc[:, None] - acc[None, :] > spread)
    np.fill_diagonal(beaten, False)
    return pd.Series(~beaten.any(axis=0), index=table.index, dtype=bool)


def best_reference(references: pd.DataFrame) -> pd.Series | None:
    """The most accurate published FAT the run evaluated within its budget (state REFERENCE), or None."""
    if references.empty or "state" not in references:
        return None
    done = references[(references["state"] == "REFERENCE") & references["accuracy"].notna()]
    return done.loc[done["accuracy"].astype(float).idxmax()] if not done.empty else None


def difference(accuracy: float, std: float, ref_accuracy: float, ref_std: float) -> tuple[float, float, float]:
    """(accuracy - ref_accuracy, its CONFIDENCE interval's low and high end)."""
    diff, spread = accuracy - ref_accuracy, Z * math.hypot(std, ref_std)
    return diff, diff - spread, diff + spread


def verdict(diff: float, low: float, high: float, reference: str) -> str:
    """The difference in words with its interval; 'not distinguishable' where the interval holds 0."""
    interval = f"{diff:+.4f}, {CONFIDENCE:.0%} interval {low:+.4f} to {high:+.4f}"
    if low <= 0 <= high:
        return f"{INDISTINCT} from {reference} ({interval})"
    return f"{'better' if diff > 0 else 'worse'} than {reference} ({interval})"


def with_differences(table: pd.DataFrame, reference: pd.Series | None, ref_std: float) -> pd.DataFrame:
    """`table` (with intervals) with each row's difference from `reference` (None: no published FAT under budget)."""
    out = table.copy()
    if reference is None:
        return out.assign(reference=None, vs_reference=math.nan, vs_reference_low=math.nan,
                          vs_reference_high=math.nan, verdict="no published FAT under the budget to compare with")
    values = [difference(float(r["accuracy"]), float(r["accuracy_std"]), float(reference["accuracy"]), ref_std)
              for _, r in out.iterrows()]
    name = str(reference["name"])
    out["reference"] = name
    out["vs_reference"] = [v[0] for v in values]
    out["vs_reference_low"] = [v[1] for v in values]
    out["vs_reference_high"] = [v[2] for v in values]
    out["verdict"] = [verdict(*v, name) for v in values]
    return out


def noise_aware_band(done: pd.DataFrame, front_mask: pd.Series, references: pd.DataFrame, std: float,
                     seeds: str | None = None) -> pd.DataFrame:
    """The band of `done` (complete rows with accuracy and latency_ms), fastest first: intervals, `on_front`
    (from `front_mask`), and the difference from the best published FAT under budget."""
    if done.empty:
        return done.assign(**{c: [] for c in (*INTERVAL_COLUMNS, "on_front", *DIFFERENCE_COLUMNS)})
    table = with_intervals(done, std, seeds).assign(on_front=front_mask.reindex(done.index, fill_value=False))
    table = table[band_mask(table)]
    ref = best_reference(references)
    table = with_differences(table, ref, std)
    return table.sort_values("latency_ms").reset_index(drop=True)


def summary_line(band: pd.DataFrame) -> str:
    """What the band says, in one line: how many networks, and how many beat the reference with confidence."""
    if band.empty:
        return "band: no complete network yet"
    if band["vs_reference"].isna().all():
        return f"band: {len(band)} networks not beaten with confidence; no published FAT under the budget"
    better = int((band["vs_reference_low"] > 0).sum())
    ref = band["reference"].iloc[0]
    if better == 0:
        return (f"band: {len(band)} networks not beaten with confidence; none of them can be told apart from "
                f"{ref} or is better ({INDISTINCT} or worse at {CONFIDENCE:.0%})")
    return f"band: {len(band)} networks not beaten with confidence; {better} better than {ref} at {CONFIDENCE:.0%}"


__all__ = ["BAND_FILE", "CONFIDENCE", "DIFFERENCE_COLUMNS", "INDISTINCT", "INTERVAL_COLUMNS", "NOISE_COLUMNS",
           "NOISE_FILE", "Noise", "Z", "band_mask", "beats", "best_reference", "binomial_std", "difference",
           "noise_aware_band", "pooled_std", "summary_line", "verdict", "with_differences", "with_intervals"]
