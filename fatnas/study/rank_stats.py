"""Rank statistics for proxy studies: batched Kendall tau, size-controlled taus, reliability, a LOO predictor.

Every function is plain numpy on arrays of per-network values (higher = better); a leading axis,
where a function takes one, holds bootstrap samples, so 1,000 resamples cost one vectorized call.
How to read the results (noise ceilings, Spearman-Brown) is in PROXY_SCIENCE.md.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ..estimate.predictor import RIDGE_ALPHA, loo_ridge  # the ridge lives with the predictor estimator

BOOTSTRAP_SAMPLES = 1000
LEVEL = 0.9  # two-sided coverage of every interval
BAND_FACTOR = 2.0  # FLOPs bands: networks within a factor of 2 of each other
MIN_BAND = 3  # networks a band needs to count
_CHUNK_CELLS = 4_000_000  # sign-matrix cells per batch of kendall_tau
_ZERO_RESIDUAL = 1e-8  # residual ranks below this are exactly explained by the covariates


def kendall_tau(x: np.ndarray, y: np.ndarray) -> np.ndarray | float:
    """Kendall's tau-b (as scipy's) along the last axis; 2-d input gives one tau per row.

    NaN where x or y is constant.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim == 1:
        return float(_tau_b(x[None], y[None])[0])
    n = x.shape[-1]
    step = max(1, _CHUNK_CELLS // max(1, n * n))
    return np.concatenate([_tau_b(x[i:i + step], y[i:i + step]) for i in range(0, len(x), step)])


def _tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    sx = np.sign(x[:, :, None] - x[:, None, :])
    sy = np.sign(y[:, :, None] - y[:, None, :])
    pairs = n * (n - 1) / 2
    score = (sx * sy).sum(axis=(1, 2)) / 2
    tied_x = ((sx == 0).sum(axis=(1, 2)) - n) / 2
    tied_y = ((sy == 0).sum(axis=(1, 2)) - n) / 2
    denom = np.sqrt((pairs - tied_x) * (pairs - tied_y))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, score / np.where(denom > 0, denom, 1), np.nan)


def spearman_rho(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation; NaN where one side is constant."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def bootstrap_indices(n: int, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> np.ndarray:
    """samples x n indices of networks drawn with replacement; the same seed pairs two statistics."""
    return np.random.default_rng(seed).integers(0, n, (samples, n))


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of the finite `values` (NaN, NaN when there are none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def tau_interval(x: np.ndarray, y: np.ndarray, *, samples: int = BOOTSTRAP_SAMPLES,
                 seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of Kendall tau over resampled networks."""
    idx = bootstrap_indices(len(x), samples, seed)
    return interval(kendall_tau(np.asarray(x)[idx], np.asarray(y)[idx]))


def paired_difference(x: np.ndarray, other: np.ndarray, y: np.ndarray, *, samples: int = BOOTSTRAP_SAMPLES,
                      seed: int = 0) -> tuple[float, float, float]:
    """tau(x, y) - tau(other, y) and its paired-bootstrap interval (the same networks resampled for both)."""
    x, other, y = (np.asarray(a, dtype=float) for a in (x, other, y))
    idx = bootstrap_indices(len(x), samples, seed)
    diffs = kendall_tau(x[idx], y[idx]) - kendall_tau(other[idx], y[idx])
    return (kendall_tau(x, y) - kendall_tau(other, y), *interval(diffs))


def ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share one) along the last axis."""
    return stats.rankdata(values, axis=-1)


def partial_tau(x: np.ndarray, y: np.ndarray, covariates: np.ndarray) -> np.ndarray | float:
    """Kendall tau of the ranks of x and y after each is regressed on [1, ranks of each covariate].

    `covariates` is n x c (or samples x n x c with samples x n values). Ranks of the covariates
    are ranks of their logs, so a pure size ranking leaves no residual: NaN (nothing beyond size).
    """
    x, y, z = (np.asarray(a, dtype=float) for a in (x, y, covariates))
    single = x.ndim == 1
    if single:
        x, y, z = x[None], y[None], z[None]
    design = np.concatenate([np.ones(z.shape[:-1] + (1,)), ranks(np.swapaxes(z, -1, -2)).swapaxes(-1, -2)], axis=-1)
    projector = design @ np.linalg.pinv(design)
    tau = kendall_tau(_residual(ranks(x), projector), _residual(ranks(y), projector))
    return float(tau[0]) if single else tau


def _residual(values: np.ndarray, projector: np.ndarray) -> np.ndarray:
    residual = values - (projector @ values[..., None])[..., 0]
    residual[np.abs(residual) < _ZERO_RESIDUAL] = 0.0
    return residual


def partial_interval(x: np.ndarray, y: np.ndarray, covariates: np.ndarray, *, samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of `partial_tau` over resampled networks."""
    idx = bootstrap_indices(len(x), samples, seed)
    z = np.asarray(covariates, dtype=float)
    return interval(partial_tau(np.asarray(x, float)[idx], np.asarray(y, float)[idx], z[idx]))


def flops_bands(flops: np.ndarray, factor: float = BAND_FACTOR) -> np.ndarray:
    """Band number of each network: floor(log_factor(flops / smallest flops))."""
    flops = np.asarray(flops, dtype=float)
    return np.floor(np.log(flops / flops.min()) / math.log(factor) + 1e-12).astype(int)


def band_tau(x: np.ndarray, y: np.ndarray, flops: np.ndarray, *, factor: float = BAND_FACTOR,
             min_size: int = MIN_BAND) -> tuple[float, int]:
    """Kendall tau within FLOPs bands (>= min_size networks), pair-count-weighted mean; and the networks used."""
    x, y, bands = np.asarray(x, float), np.asarray(y, float), flops_bands(flops, factor)
    total, weight, used = 0.0, 0.0, 0
    for band in np.unique(bands):
        members = bands == band
        size = int(members.sum())
        tau = kendall_tau(x[members], y[members]) if size >= min_size else float("nan")
        if np.isfinite(tau):
            pairs = size * (size - 1) / 2
            total, weight, used = total + pairs * tau, weight + pairs, used + size
    return (total / weight if weight else float("nan")), used


def tau_to_r(tau: float) -> float:
    """Greiner's relation: Pearson r of a bivariate normal with Kendall `tau`, sin(pi * tau / 2)."""
    return math.sin(math.pi * tau / 2)


def spearman_brown(r1: float, k: int) -> float:
    """Reliability of a k-seed mean from the one-seed reliability r1 (NaN where undefined)."""
    denom = 1 + (k - 1) * r1
    return k * r1 / denom if denom > 0 else float("nan")


def tau_ceiling(seed_tau: float, k: int) -> float:
    """The highest tau a noise-free proxy reaches against a k-seed mean whose seed-to-seed tau is `seed_tau`."""
    if not np.isfinite(seed_tau):
        return float("nan")
    reliability = spearman_brown(max(0.0, tau_to_r(seed_tau)), k)  # seeds that disagree: no reliability
    return 2 / math.pi * math.asin(math.sqrt(reliability)) if reliability > 0 else 0.0


def icc1(values: np.ndarray) -> tuple[float, float]:
    """ICC(1) and ICC(1,k) of a networks x seeds table (one-way ANOVA over networks; complete rows only)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values).all(axis=1)]
    n, k = values.shape
    if n < 2 or k < 2:
        return float("nan"), float("nan")
    means = values.mean(axis=1)
    between = k * ((means - values.mean()) ** 2).sum() / (n - 1)
    within = ((values - means[:, None]) ** 2).sum() / (n * (k - 1))
    spread = between + (k - 1) * within
    single = (between - within) / spread if spread else float("nan")
    return float(single), float((between - within) / between) if between else float("nan")


def seed_tau(values: np.ndarray) -> np.ndarray | float:
    """Mean Kendall tau over every pair of seed columns of a networks x seeds table.

    A samples x networks x seeds array gives one mean per sample.
    """
    values = np.asarray(values, dtype=float)
    k = values.shape[-1]
    taus = [kendall_tau(values[..., i], values[..., j]) for i in range(k) for j in range(i + 1, k)]
    if not taus:
        return float("nan")
    return np.mean(taus, axis=0) if values.ndim == 3 else float(np.mean(taus))


__all__ = ["BOOTSTRAP_SAMPLES", "band_tau", "bootstrap_indices", "flops_bands", "icc1", "interval", "kendall_tau",
           "RIDGE_ALPHA", "loo_ridge", "paired_difference", "partial_interval", "partial_tau", "ranks",
           "seed_tau", "spearman_brown", "spearman_rho", "tau_ceiling", "tau_interval", "tau_to_r"]
