"""One shape for every estimator of how good a network is: a config in, an `Estimate` out.

An estimator kind is registered by name with a factory: `register_estimator("supernet", factory)`
makes the spec `supernet:ID` work wherever an estimator is named (the search's trial evaluation,
the fidelity study), which call only `make_estimator(spec, **context).estimate(cfg)` and never
look at the kind. A factory takes the text after the colon and the context keywords it needs
(`proxy` ProxySettings, `data` DataSplit, `seed`, `res`, `batch_size`, `cost_res`, ...), ignoring
the others. Built in: `proxy` (short training), `zero-cost:NAME` (synflow, grad_norm, snip,
naswot, and the params / flops baselines) and `predictor` (ridge regression on features).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ..errors import FatnasError
from ..model.config import FATConfig

Report = Callable[[int, float], bool]  # (checkpoint, score) -> stop now?


@dataclass(frozen=True)
class Estimate:
    """What an estimator says about one network."""

    score: float  # higher is better (accuracy for training estimators)
    metrics: dict[str, float]  # everything measured: accuracy, val_loss, sotl_e, curve_slope, images_seen, score, ...
    seconds: float  # what it cost
    provenance: str  # e.g. "proxy:res=56,train_images=1024,epochs=1", "zero-cost:synflow"
    curve: tuple[tuple[int, float], ...] = field(default=())  # (images seen, score) per checkpoint, where there is one
    stopped: bool = False  # `report` asked it to stop before the end


class Estimator(Protocol):
    """A config in, a score with its cost and provenance out; `report(checkpoint, score)` returning True stops it."""

    name: str

    def estimate(self, cfg: FATConfig, report: Report | None = None) -> Estimate: ...


EstimatorFactory = Callable[..., Estimator]  # factory(argument_text, **context) -> Estimator
ESTIMATORS: dict[str, EstimatorFactory] = {}
BUILT_IN = ("fatnas.estimate.proxy", "fatnas.estimate.zero_cost", "fatnas.estimate.predictor")  # register on import


def register_estimator(kind: str, factory: EstimatorFactory) -> None:
    """Make the spec `KIND` (or `KIND:ARGUMENT`) build an estimator with `factory(argument, **context)`."""
    ESTIMATORS[kind] = factory


def estimator_kinds() -> list[str]:
    _load_built_in()
    return sorted(ESTIMATORS)


def make_estimator(spec: str, **context: Any) -> Estimator:
    """The estimator of `spec` (`proxy`, `zero-cost:synflow`, ...), built from what `context` gives it."""
    _load_built_in()
    kind, _, argument = spec.partition(":")
    if kind not in ESTIMATORS:
        raise FatnasError(f"unknown estimator {spec!r}; accepted kinds: {', '.join(sorted(ESTIMATORS))}")
    return ESTIMATORS[kind](argument, **context)


def _load_built_in() -> None:
    for module in BUILT_IN:
        importlib.import_module(module)


__all__ = ["BUILT_IN", "ESTIMATORS", "Estimate", "Estimator", "EstimatorFactory", "Report", "estimator_kinds",
           "make_estimator", "register_estimator"]
