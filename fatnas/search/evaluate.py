"""What every search backend does with one candidate: price it, check the budget, time it, train it.

The budget is checked analytically before any training (and latency, when limited, is
measured before training too), so no time is spent on infeasible networks.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import FatnasError, check_positive, check_threads
from ..estimate.base import make_estimator
from ..estimate.cost import Budget, Cost, analytic_cost
from ..estimate.data import DataSplit, check_classes
from ..estimate.liveness import sampling_space
from ..estimate.memory import check_memory
from ..estimate.proxy import ProxySettings
from ..estimate.zero_cost import check_proxy
from ..model.config import NUM_STAGES, STAGE_FIELDS, FATConfig
from ..model.space import SearchSpace
from .storage import Heartbeat

Report = Callable[[int, float], bool]
# what a proxy training measures besides its final validation accuracy (fatnas.estimate.proxy.ProxyResult)
ESTIMATES = ("val_loss", "sotl_e", "curve_slope")
# the two objectives of a proxy search, as run.yaml and the dashboard name them (`objectives` for any estimator)
OBJECTIVES = dict(accuracy="proxy validation accuracy at the last checkpoint (maximized)",
                  latency_ms="median batch-1 forward latency at the target resolution (minimized)")


def objectives(estimator: str = "proxy") -> dict[str, str]:
    """The two objectives of a search scored by `estimator` (`proxy` or `supernet:ID`)."""
    if estimator == "proxy":
        return dict(OBJECTIVES)
    accuracy = (f"validation accuracy with weights inherited from {estimator.replace(':', ' ', 1)}, BatchNorm "
                "recalibrated, no training (maximized)") if estimator.startswith("supernet:") else \
        f"validation accuracy estimated by {estimator} (maximized)"
    return dict(OBJECTIVES, accuracy=accuracy)


SAMPLERS = ("tpe", "nsga2", "gp", "random")
MAX_NOISE_SEEDS = 10


@dataclass(frozen=True)
class SearchSettings:
    """Everything that defines a search, recorded in run.yaml."""

    space: SearchSpace
    budget: Budget
    proxy: ProxySettings
    trials: int = 20
    timeout_s: float | None = None
    sampler: str = "tpe"
    seed: int = 0
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    latency_warmup: int = 5  # the first passes of a new model build its kernels
    latency_repeats: int = 9
    references: bool = True
    early_stopping: bool = True
    threads: int = 1  # torch threads for timing and training (one per trial runs best on small CPUs)
    prescreen: str | None = None  # a zero-cost proxy (or params/flops) that picks which candidates train
    prescreen_keep: float = 0.25  # fraction of the scored candidates that train
    collapse_inert: bool = True  # draw one value of each class of choices the proxy cannot tell apart
    latency_model: str | None = None  # a latency table (fatnas.estimate.latency): latency priced from it, not measured
    heartbeat: Heartbeat = Heartbeat()  # how workers sharing the study find a dead one
    classes: tuple[int, ...] = ()  # train and validate on these classes of the data set only (empty: all)
    estimator: str = "proxy"  # what scores a candidate (`fatnas.estimate.make_estimator`); run.yaml names others only
    noise_seeds: int = 2  # evaluations of each network the run measures its noise on (`search/noise.py`); 1: none

    def __post_init__(self) -> None:
        check_positive(trials=self.trials, timeout=self.timeout_s)
        check_threads(self.threads)
        check_classes(self.classes)
        if not 1 <= self.noise_seeds <= MAX_NOISE_SEEDS:
            raise FatnasError(f"--noise-seeds {self.noise_seeds!r}: accepted 1 (no noise measured) to "
                              f"{MAX_NOISE_SEEDS} evaluations per network")
        if self.sampler not in SAMPLERS:
            raise FatnasError(f"unknown sampler {self.sampler!r}; accepted: {', '.join(SAMPLERS)}")
        if self.prescreen is not None:
            check_proxy(self.prescreen)
        if not 0 < self.prescreen_keep <= 1:
            raise FatnasError(f"prescreen keep fraction {self.prescreen_keep!r}: must be in (0, 1], e.g. 0.25")
        check_memory(self.space, self.proxy.res, self.proxy.batch_size, self.device, training=True, what="--proxy-res")
        if self.latency_model is None:  # candidates are timed here at the space's resolution
            check_memory(self.space, self.space.resolution, 1, self.device, training=False,
                         what=f"space {self.space.name!r} resolution")

    @property
    def prescreen_draws(self) -> int:
        """Candidates scored per trained trial: round(1 / keep)."""
        return max(1, round(1 / self.prescreen_keep)) if self.prescreen else 1

    @property
    def sampled_space(self) -> SearchSpace:
        """The space trials draw from: with collapse_inert, `sampling_space(space, proxy.res)`, else the space."""
        return sampling_space(self.space, self.proxy.res) if self.collapse_inert else self.space

    @property
    def device(self) -> str:
        return self.proxy.device


@dataclass
class Evaluation:
    """The measured facts about one candidate (one row of trials.csv, less the trial state)."""

    config: FATConfig
    cost: Cost
    latency_ms: float | None = None
    latency_ratio: float | None = None  # measured: the ratio to fat_b0 timed beside it, in this process
    latency_reference_ms: float | None = None  # measured: fat_b0's median in this process when it was timed
    infeasible: list[str] = field(default_factory=list)
    accuracy: float | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    images_seen: int = 0
    stopped_early: bool = False
    estimates: dict[str, float | None] = field(default_factory=dict)  # ESTIMATES of the proxy training
    estimator: str = ""  # the provenance of the score: `proxy:res=...`, `supernet:ID@sha256`

    def attrs(self) -> dict[str, Any]:
        """Plain values stored with the trial (Optuna user attrs / Ray results)."""
        return dict(config=self.config.to_dict(), params=self.cost.params, flops=self.cost.flops,
                    flops_conv=self.cost.flops_by_operator["conv"], latency_ms=self.latency_ms,
                    latency_ratio=self.latency_ratio, latency_reference_ms=self.latency_reference_ms,
                    infeasible="; ".join(self.infeasible), curve=[list(p) for p in self.curve],
                    train_seconds=self.train_seconds, images_seen=self.images_seen, estimator=self.estimator,
                    **{name: self.estimates.get(name) for name in ESTIMATES})


def price(cfg: FATConfig, settings: SearchSettings) -> Evaluation:
    """Analytic cost at the space's resolution and the budget check on it (no module built)."""
    cost = analytic_cost(cfg, settings.space.resolution)
    return Evaluation(config=cfg, cost=cost, infeasible=settings.budget.violations(cost))


def budget_excess(ev: Evaluation, budget: Budget) -> dict[str, float]:
    """Optuna constraint values of the analytic limits: cost / limit - 1 (above 0: over budget)."""
    out = {}
    if budget.max_flops is not None:
        out["flops"] = ev.cost.flops / budget.max_flops - 1
    if budget.max_params is not None:
        out["params"] = ev.cost.params / budget.max_params - 1
    return out


def time_candidate(ev: Evaluation, settings: SearchSettings) -> Evaluation:
    """Latency at the target resolution, from a table or measured against a reference; checks a latency budget."""
    from ..estimate.latency import cached_table, measured_latency

    if settings.latency_model:
        ev.latency_ms = cached_table(settings.latency_model).predict_ms(ev.config, res=settings.space.resolution)
    else:
        timed = measured_latency(ev.config, res=settings.space.resolution, device=settings.device,
                                 threads=settings.threads, warmup=settings.latency_warmup,
                                 repeats=settings.latency_repeats)
        ev.latency_ms, ev.latency_ratio, ev.latency_reference_ms = timed.latency_ms, timed.ratio, timed.reference_ms
    ev.infeasible = settings.budget.violations(ev.cost, ev.latency_ms)
    return ev


def train_candidate(ev: Evaluation, data: DataSplit, settings: SearchSettings,
                    report: Report | None = None) -> Evaluation:
    """Estimate the candidate with the settings' estimator (by default proxy training); `report(checkpoint,
    accuracy)` returning True stops it early."""
    start = time.perf_counter()
    estimate = make_estimator(settings.estimator, proxy=settings.proxy, data=data, seed=settings.seed,
                              res=settings.proxy.res, cost_res=settings.space.resolution,
                              device=settings.device).estimate(ev.config, report)
    ev.estimator = estimate.provenance
    ev.accuracy, ev.curve, ev.stopped_early = estimate.score, list(estimate.curve), estimate.stopped
    ev.images_seen = int(estimate.metrics.get("images_seen", 0))
    ev.train_seconds = time.perf_counter() - start
    ev.estimates = {name: _finite_or_none(estimate.metrics.get(name)) for name in ESTIMATES}
    return ev


def _finite_or_none(value: float | None) -> float | None:
    """NaN (e.g. the slope of a one-checkpoint curve) stored as None: JSON and Optuna's storage take it."""
    return value if value is not None and math.isfinite(value) else None


def config_columns(cfg: FATConfig) -> dict[str, Any]:
    """One column per stage value: widths_0 .. ffn_kernels_3."""
    return {f"{name}_{s}": getattr(cfg, name)[s] for name in STAGE_FIELDS for s in range(NUM_STAGES)}


def trial_row(number: int, state: str, attrs: dict[str, Any], accuracy: float | None,
              latency_ms: float | None, error: str = "") -> dict[str, Any]:
    """One row of trials.csv, the same for every backend."""
    cfg = FATConfig.from_dict(attrs["config"]) if attrs.get("config") else None
    row: dict[str, Any] = dict(
        trial=number, state=state, accuracy=accuracy, latency_ms=latency_ms,
        latency_ratio=attrs.get("latency_ratio"), latency_reference_ms=attrs.get("latency_reference_ms"),
        params=attrs.get("params"), flops=attrs.get("flops"), flops_conv=attrs.get("flops_conv"),
        train_seconds=attrs.get("train_seconds"), images_seen=attrs.get("images_seen"),
        checkpoints=len(attrs.get("curve") or []), infeasible=attrs.get("infeasible", ""), error=error,
        prescreen_score=attrs.get("prescreen_score"), **{name: attrs.get(name) for name in ESTIMATES},
        worker=attrs.get("worker"), estimator=attrs.get("estimator"),
    )
    if cfg is not None:
        row.update(config_columns(cfg))
    row["curve"] = json.dumps(attrs.get("curve") or [])
    row["config"] = json.dumps(attrs.get("config") or {})
    return row
