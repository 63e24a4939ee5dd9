"""The `predictor` estimator: ridge regression, fitted on networks whose target is known, from a network's size
(log params, log FLOPs) and the scores of other estimators to that target; and its leave-one-out form.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..model.config import FATConfig
from .base import Estimate, Estimator, Report, register_estimator
from .cost import analytic_cost

RIDGE_ALPHA = 1.0  # on standardized features and target


@dataclass(frozen=True)
class Ridge:
    """A ridge fit on standardized features and target (features that never vary get scale 1)."""

    mean: np.ndarray
    std: np.ndarray
    y_mean: float
    y_std: float
    weights: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, target: np.ndarray, alpha: float = RIDGE_ALPHA) -> "Ridge":
        x, y = np.asarray(features, dtype=float), np.asarray(target, dtype=float)
        mean, std = x.mean(axis=0), x.std(axis=0)
        std[std == 0] = 1.0
        z = (x - mean) / std
        y_mean, y_std = y.mean(), y.std() or 1.0
        weights = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ ((y - y_mean) / y_std))
        return cls(mean, std, y_mean, y_std, weights)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.y_mean + self.y_std * (((np.asarray(features, dtype=float) - self.mean) / self.std) @ self.weights)


def loo_ridge(features: np.ndarray, target: np.ndarray, alpha: float = RIDGE_ALPHA) -> np.ndarray:
    """Leave-one-out predictions of `target`: each network's from a ridge fit on the others (standardized)."""
    x, y = np.asarray(features, dtype=float), np.asarray(target, dtype=float)
    predictions = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        predictions[i] = Ridge.fit(x[keep], y[keep], alpha).predict(x[i])
    return predictions


class PredictorEstimator:
    """Predicts a target (say, a reference's accuracy) from log params, log FLOPs and `inputs`' scores."""

    name = "predictor"

    def __init__(self, ridge: Ridge, inputs: Sequence[Estimator] = (), cost_res: int = 224) -> None:
        self.ridge, self.inputs, self.cost_res = ridge, tuple(inputs), cost_res

    @classmethod
    def fit(cls, configs: Sequence[FATConfig], targets: Sequence[float], inputs: Sequence[Estimator] = (), *,
            cost_res: int = 224, alpha: float = RIDGE_ALPHA) -> "PredictorEstimator":
        untrained = cls(Ridge(np.zeros(0), np.ones(0), 0.0, 1.0, np.zeros(0)), inputs, cost_res)
        rows = [untrained.features(cfg)[0] for cfg in configs]
        return cls(Ridge.fit(np.array(rows), np.asarray(targets, dtype=float), alpha), inputs, cost_res)

    @classmethod
    def from_spec(cls, argument: str = "", *, configs: Sequence[FATConfig], targets: Sequence[float],
                  inputs: Sequence[Estimator] = (), cost_res: int = 224, **context: Any) -> "PredictorEstimator":
        return cls.fit(configs, targets, inputs, cost_res=cost_res)

    def features(self, cfg: FATConfig) -> tuple[list[float], float]:
        """The network's feature row and the seconds its inputs took."""
        cost = analytic_cost(cfg, self.cost_res)
        row, seconds = [math.log(cost.params), math.log(max(cost.flops, 1))], 0.0
        for estimator in self.inputs:
            estimate = estimator.estimate(cfg)
            row.append(estimate.score)
            seconds += estimate.seconds
        return row, seconds

    def estimate(self, cfg: FATConfig, report: Report | None = None) -> Estimate:
        start = time.perf_counter()
        row, _ = self.features(cfg)
        value = float(self.ridge.predict(np.array(row)))
        names = ", ".join(e.name for e in self.inputs) or "size only"
        return Estimate(score=value, metrics=dict(score=value), seconds=time.perf_counter() - start,
                        provenance=f"predictor:ridge({names})")


register_estimator("predictor", PredictorEstimator.from_spec)

__all__ = ["RIDGE_ALPHA", "PredictorEstimator", "Ridge", "loo_ridge"]
