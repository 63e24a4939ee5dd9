"""Estimate layer: what a config costs and how good it is (cost, budgets, latency, data, proxy training,
zero-cost scores, liveness, the predictor) behind one Estimator shape; imports model, errors and paths."""
from .base import Estimate, Estimator, estimator_kinds, make_estimator, register_estimator

__all__ = ["Estimate", "Estimator", "estimator_kinds", "make_estimator", "register_estimator"]
