"""Fits over a scaling table: power laws of cost, proxy accuracy per doubling of FLOPs, and the largest
compound scaling within a budget."""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import numpy as np
import pandas as pd

from ..estimate.cost import Budget, Cost, analytic_cost, flop_convention, format_flops
from ..model.config import FATConfig, describe
from ..paths import portable_path
from .transforms import BASE_RES, X_LABELS, Compound, ScalingError, compound_scale, fit_x

COST_METRICS = ("params", "flops", "latency_ms")


class PowerLaw(NamedTuple):
    """y = coefficient * x ** exponent, fitted by least squares in log-log space."""

    coefficient: float
    exponent: float
    r2: float  # in log space; 1 when the fit is exact (a constant, say)
    max_rel_error: float  # largest |fitted - actual| / actual over the points fitted

    def __call__(self, x: Any) -> Any:
        return self.coefficient * np.asarray(x, dtype=float) ** self.exponent


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> PowerLaw:
    """Least-squares line through (log x, log y); needs two distinct positive x and positive y."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or len(np.unique(x)) < 2 or (x <= 0).any() or (y <= 0).any():
        raise ScalingError("a power law needs at least two distinct positive x and positive y")
    a = np.column_stack([np.ones(len(x)), np.log(x)])
    (log_c, exponent), *_ = np.linalg.lstsq(a, np.log(y), rcond=None)
    r2 = _r2(np.log(y), a @ np.array([log_c, exponent]))
    exponent = 0.0 if abs(exponent) < 1e-9 else float(exponent)  # a constant (params against resolution)
    law = PowerLaw(float(math.exp(log_c)), exponent, r2, 0.0)
    return law._replace(max_rel_error=float(np.max(np.abs(law(x) - y) / y)))


def _r2(actual: np.ndarray, fitted: np.ndarray) -> float:
    ss_res = float(np.sum((actual - fitted) ** 2))
    ss_tot = float(np.sum((actual - actual.mean()) ** 2))
    if ss_tot <= 1e-12 * max(1.0, float(np.sum(actual ** 2))):
        return 1.0 if ss_res <= 1e-12 * max(1.0, float(np.sum(actual ** 2))) else math.nan
    return 1.0 - ss_res / ss_tot


def cost_fits(table: pd.DataFrame) -> pd.DataFrame:
    """Power laws of params, FLOPs and (where measured) latency against each direction's multiplier."""
    rows = []
    for direction, points in table.groupby("direction", sort=False):
        x = [fit_x(direction, m) for m in points["multiplier"]]
        for metric in COST_METRICS:
            y = points[metric].astype(float)
            ok = y.notna().to_numpy()
            if ok.sum() < 2 or len(set(np.asarray(x)[ok])) < 2:
                continue
            law = fit_power_law(np.asarray(x)[ok], y[ok])
            rows.append(dict(direction=direction, metric=metric, x=X_LABELS[direction], exponent=law.exponent,
                             coefficient=law.coefficient, r2=law.r2, max_rel_error=law.max_rel_error,
                             points=int(ok.sum())))
    return pd.DataFrame(rows, columns=["direction", "metric", "x", "exponent", "coefficient", "r2", "max_rel_error",
                                       "points"])


def accuracy_fits(table: pd.DataFrame) -> pd.DataFrame:
    """Per direction with >= 2 trained points: proxy accuracy = intercept + slope * log2(FLOPs)."""
    rows = []
    for direction, points in table.groupby("direction", sort=False):
        done = points.dropna(subset=["accuracy"])
        log_flops = np.log2(done["flops"].astype(float).to_numpy())
        if len(done) < 2 or len(np.unique(log_flops)) < 2:
            continue
        acc = done["accuracy"].astype(float).to_numpy()
        a = np.column_stack([np.ones(len(acc)), log_flops])
        (intercept, slope), *_ = np.linalg.lstsq(a, acc, rcond=None)
        slope = 0.0 if abs(slope) < 1e-12 else float(slope)  # equal accuracies: no gain, not -0.0000
        rows.append(dict(direction=direction, slope_per_doubling=slope, intercept=float(intercept),
                         r2=_r2(acc, a @ np.array([intercept, slope])), points=len(done),
                         min_flops=int(done["flops"].min()), max_flops=int(done["flops"].max())))
    return pd.DataFrame(rows, columns=["direction", "slope_per_doubling", "intercept", "r2", "points", "min_flops",
                                       "max_flops"])


def best_direction(acc_fits: pd.DataFrame, dataset: str) -> str:
    """One sentence: which direction buys the most proxy accuracy per doubling of FLOPs."""
    if acc_fits.empty:
        return ("No direction has two proxy-trained points yet, so none can be compared "
                "(train more with --train N, N >= 2).")
    best = acc_fits.loc[acc_fits["slope_per_doubling"].idxmax()]
    others = ", ".join(f"{r['direction']} {r['slope_per_doubling']:+.4f}" for _, r in acc_fits.iterrows()
                       if r["direction"] != best["direction"])
    task = f"On the proxy task ({dataset}; proxy accuracy, not ImageNet accuracy)"
    slope = f"{best['slope_per_doubling']:+.4f} accuracy per doubling of FLOPs"
    tail = f" (others: {others})." if others else ", the only direction with two trained points."
    if best["slope_per_doubling"] <= 0:  # e.g. a proxy too short for larger networks to pay off
        return (f"{task} no direction gains accuracy with FLOPs at these proxy settings; "
                f"{best['direction']} scaling loses the least: {slope}" + tail)
    return f"{task} {best['direction']} scaling buys the most accuracy per FLOP: {slope}" + tail


# ---------------------------------------------------------------- the largest scaling within a budget

class BudgetFit(NamedTuple):
    """The largest compound (depth and width) scaling of a base that fits a budget, at 224 px."""

    phi: float
    width_mult: float
    depth_mult: float
    config: FATConfig
    cost: Cost
    budget: Budget


def fit_budget(base: FATConfig, budget: Budget, coeffs: Compound = Compound(), *, step: float = 0.001,
               max_phi: float = 50.0) -> BudgetFit:
    """Bisect phi on a grid of `step` for the largest depth alpha^phi, width beta^phi whose analytic cost fits.

    The resolution stays at 224 px (budgets are priced there). Rounded widths and depths never shrink
    as phi grows, so the cost is monotone in phi and bisection finds the largest fitting grid point.
    """
    if budget.max_latency_ms is not None:
        raise ScalingError("--to takes FLOPs and params budgets (priced analytically), not a latency budget")
    if budget.max_flops is None and budget.max_params is None:
        raise ScalingError("--to needs a FLOPs or params budget, e.g. --to 2GFLOPs")
    if budget.res != BASE_RES:
        raise ScalingError(f"fit_budget prices at {BASE_RES} px; got a budget at {budget.res} px")

    def fits(k: int) -> bool:
        cfg, _ = compound_scale(base, k * step, coeffs, scale_resolution=False)
        return budget.fits(analytic_cost(cfg, BASE_RES))

    limit, quarter = int(round(max_phi / step)), max(1, int(round(0.25 / step)))
    if fits(0):  # grow until something does not fit: lo fits, hi does not
        lo, hi = 0, quarter
        while fits(hi):
            if hi >= limit:
                raise ScalingError(f"{budget.describe()} is beyond phi = {max_phi:g}; give a smaller budget")
            lo, hi = hi, min(limit, 2 * hi)
    else:  # shrink until something fits
        lo, hi = -quarter, 0
        while not fits(lo):
            if lo <= -limit:
                smallest, _ = compound_scale(base, -max_phi, coeffs, scale_resolution=False)
                cost = analytic_cost(smallest, BASE_RES)
                raise ScalingError(f"no compound scaling of the base fits {budget.describe()}: even the smallest "
                                   f"({describe(smallest, ('widths', 'depths'))}) costs {format_flops(cost.flops)}, "
                                   f"{cost.params / 1e6:.2f}M params")
            lo, hi = max(-limit, 2 * lo), lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    phi = round(lo * step, 10)
    depth, width, _ = coeffs.multipliers(phi)
    cfg, _ = compound_scale(base, phi, coeffs, scale_resolution=False)
    return BudgetFit(phi, width, depth, cfg, analytic_cost(cfg, BASE_RES), budget)


def export_budget_fit(fit: BudgetFit, base_name: str, name: str, coeffs: Compound = Compound(), *,
                      force: bool = False):
    """Write a `fit_budget` result as variant `name` through the export path (atomic, name rules, no overwrite)."""
    from ..runs.export import export_config

    base_name = portable_path(base_name)  # a variant records no machine path
    source = dict(run=None, origin=f"scaling of {base_name}", base=base_name,
                  scaling="compound, depth and width only (resolution fixed at 224)", phi=fit.phi,
                  alpha=coeffs.alpha, beta=coeffs.beta, width_multiplier=fit.width_mult,
                  depth_multiplier=fit.depth_mult, budget=fit.budget.describe(), flops=fit.cost.flops,
                  flop_convention=flop_convention(BASE_RES),
                  resolution=BASE_RES, params=fit.cost.params)
    return export_config(fit.config, name, source, force=force)


__all__ = ["COST_METRICS", "BudgetFit", "PowerLaw", "accuracy_fits", "best_direction", "cost_fits",
           "export_budget_fit", "fit_budget", "fit_power_law"]
