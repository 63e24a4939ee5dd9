"""One shape for every estimator of how good a network is: a config in, an `Estimate` out.

An estimator kind is registered by name with a factory: `register_estimator("supernet", factory)`,
called when the package `fatnas.supernet` is imported (`make_estimator` imports `fatnas.KIND` for a
kind it does not know yet, in whatever process), makes the spec `supernet:ID` work wherever an
estimator is named (the search's trial evaluation, the fidelity study), which call only
`make_estimator(spec, **context).estimate(cfg)` and never look at the kind. A factory takes the
text after the colon and the context keywords it needs (`proxy` ProxySettings, `data` DataSplit,
`seed`, `res`, `batch_size`, `cost_res`, ...), ignoring the others. Built in: `proxy` (short
training), `zero-cost:NAME` (synflow, grad_norm, snip, naswot, and the params / flops baselines)
and `predictor` (ridge regression on size and other estimators' scores).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ..errors import FatnasError
from ..model.config import FATConfig

Report = Callable[[int, float], bool]  # (checkpoint, score) -> stop now?


class NotEstimable(FatnasError):
    """The estimator cannot score this config (e.g. a network outside a supernet's space)."""


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


def check_estimator_task(estimator: Estimator, *, space: Any, dataset: str, classes: tuple[int, ...],
                         res: int) -> None:
    """Refuse a task an estimator was not made for: one trained once for a task (a supernet) says so with a
    `check_task(space=, dataset=, classes=, res=)` method; estimators without one serve any task."""
    check = getattr(estimator, "check_task", None)
    if check is not None:
        check(space=space, dataset=dataset, classes=tuple(classes), res=res)


EstimatorFactory = Callable[..., Estimator]  # factory(argument_text, **context) -> Estimator
ESTIMATORS: dict[str, EstimatorFactory] = {}
# the module that registers each built-in kind when imported; `make_estimator` imports it on first use (another
# kind K: the package fatnas.K), so a kind is found in every process that evaluates candidates (Ray trials,
# `search --join` workers), not only in the one that registered it
ESTIMATOR_MODULES = {"proxy": "fatnas.estimate.proxy", "zero-cost": "fatnas.estimate.zero_cost",
                     "predictor": "fatnas.estimate.predictor"}


def register_estimator(kind: str, factory: EstimatorFactory) -> None:
    """Make the spec `KIND` (or `KIND:ARGUMENT`) build an estimator with `factory(argument, **context)`."""
    ESTIMATORS[kind] = factory


def estimator_kinds() -> list[str]:
    for kind in list(ESTIMATOR_MODULES):
        _load(kind)
    return sorted(ESTIMATORS)


def make_estimator(spec: str, **context: Any) -> Estimator:
    """The estimator of `spec` (`proxy`, `zero-cost:synflow`, ...), built from what `context` gives it."""
    kind, _, argument = spec.partition(":")
    _load(kind)
    if kind not in ESTIMATORS:
        raise FatnasError(f"unknown estimator {spec!r}; accepted kinds: {', '.join(estimator_kinds())}")
    return ESTIMATORS[kind](argument, **context)


def _load(kind: str) -> None:
    """Import the module that registers `kind`, unless it is registered (a kind with no module stays unknown)."""
    if kind in ESTIMATORS:
        return
    module = ESTIMATOR_MODULES.get(kind, f"fatnas.{kind.replace('-', '_')}")
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module.startswith(exc.name):
            raise


__all__ = ["ESTIMATORS", "ESTIMATOR_MODULES", "Estimate", "Estimator", "EstimatorFactory", "NotEstimable", "Report",
           "check_estimator_task", "estimator_kinds", "make_estimator", "register_estimator"]
