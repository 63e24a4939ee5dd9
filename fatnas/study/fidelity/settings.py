"""The settings of a fidelity study, as run.yaml records them, and how a resumed study changes them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from ...errors import MAX_THREADS, MAX_WORKERS
from ...estimate.base import check_estimator_task, make_estimator
from ...estimate.cost import Budget, flop_convention
from ...estimate.data import check_classes
from ...estimate.memory import check_memory
from ...estimate.proxy import ProxySettings
from ...estimate.zero_cost import PROXIES, check_proxy
from ...model.space import SearchSpace, space_from_dict
from ...runs.store import Run
from .specs import (
    DEFAULT_ARCHS,
    DEFAULT_HIGH,
    DEFAULT_LOW,
    DEFAULT_TOP_K,
    REFERENCE_CHOICES,
    FidelityError,
    fidelity_fields,
    fidelity_label,
    is_scorer,
    parse_fidelity,
)

MAX_ARCHS = 10_000  # architectures of one study (each is trained)


@dataclass(frozen=True)
class StudySettings:
    """Everything that defines a fidelity study, recorded in run.yaml."""

    space: SearchSpace
    budget: Budget
    lows: tuple[ProxySettings, ...] = (ProxySettings(),)
    high: ProxySettings = parse_fidelity(DEFAULT_HIGH)
    archs: int = DEFAULT_ARCHS
    proxies: tuple[str, ...] = PROXIES
    proxy_batch: int = 64  # images in the zero-cost proxies' minibatch
    spread_seeds: int = 3  # seeds the spread network trains with at every fidelity
    high_seeds: int = 2  # seeds of the high fidelity per network (init and data order); the reference is their mean
    reference_metric: str = "auto"  # the high fidelity's ranking metric: auto, loss, accuracy or both
    classes: tuple[int, ...] = ()  # only these classes of the data set, relabelled 0, 1, ... (empty: all)
    references: bool = True
    seed: int = 0
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    workers: int = 1
    threads: int = 1
    top_k: int = DEFAULT_TOP_K
    device: str = "cpu"  # where every training runs (zero-cost scores stay on the CPU); one study, one device
    scorers: tuple[str, ...] = ()  # weight-sharing estimators scoring every network without training: supernet:ID

    def __post_init__(self) -> None:
        if self.archs < 3:
            raise FidelityError(f"--archs {self.archs}: a rank correlation needs at least 3 architectures")
        if self.archs > MAX_ARCHS:
            raise FidelityError(f"--archs {self.archs}: at most {MAX_ARCHS:,} architectures (each one is trained)")
        for name in self.proxies:
            check_proxy(name)
        labels = [self.label(s) for s in self.lows]
        if len(set(labels)) != len(labels) or self.label(self.high) in labels:
            raise FidelityError(f"fidelities must differ: low {labels}, high {self.label(self.high)!r}")
        for field in ("spread_seeds", "high_seeds", "workers", "threads", "top_k", "proxy_batch"):
            if getattr(self, field) < 1:
                raise FidelityError(f"{field} = {getattr(self, field)}: must be a positive whole number (>= 1)")
        if self.workers > MAX_WORKERS or self.threads > MAX_THREADS:
            raise FidelityError(f"workers = {self.workers}, threads = {self.threads}: at most {MAX_WORKERS} processes "
                                f"of at most {MAX_THREADS} threads")
        if self.reference_metric not in REFERENCE_CHOICES:
            raise FidelityError(f"reference metric {self.reference_metric!r}: expected {', '.join(REFERENCE_CHOICES)}")
        check_classes(self.classes)
        if self.device != "cpu" and self.device != "cuda" and not self.device.startswith("cuda:"):
            raise FidelityError(f"device {self.device!r}: expected cpu, cuda or cuda:N")
        for fidelity in self.fidelities:  # every training fits memory here, known before any starts
            check_memory(self.space, fidelity.res, fidelity.batch_size, self.device, training=True,
                         what=f"fidelity {self.label(fidelity)}: res")

    @staticmethod
    def label(settings: ProxySettings) -> str:
        return fidelity_label(settings)

    @property
    def high_label(self) -> str:
        return self.label(self.high)

    @property
    def fidelities(self) -> tuple[ProxySettings, ...]:
        return (*self.lows, self.high)

    @property
    def reference_seeds(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.high_seeds))

    @property
    def main_low(self) -> str:
        """The low fidelity the predictor uses and others are compared with: 'default' if studied, else the first."""
        labels = [self.label(s) for s in self.lows]
        return DEFAULT_LOW if DEFAULT_LOW in labels else labels[0]

    def fidelity_meta(self) -> dict[str, Any]:
        """Labels of the fidelities and their full settings (labels depend on the defaults of the day)."""
        return dict(lows=[self.label(s) for s in self.lows], high=self.high_label,
                    fidelity_settings=dict(lows=[fidelity_fields(s) for s in self.lows],
                                           high=fidelity_fields(self.high)))

    def to_meta(self) -> dict[str, Any]:
        return dict(space=self.space.to_dict(), space_source=self.space.source, budget=self.budget.to_dict(),
                    budget_text=self.budget.describe(), **self.fidelity_meta(), archs=self.archs,
                    proxies=list(self.proxies), proxy_batch=self.proxy_batch,
                    spread_seeds=self.spread_seeds, high_seeds=self.high_seeds,
                    reference_metric=self.reference_metric, classes=list(self.classes) or None,
                    references=self.references, seeds=dict(study=self.seed),
                    dataset=self.dataset, data_dir=self.data_dir, workers=self.workers, threads=self.threads,
                    top_k=self.top_k, device=self.device, **({"scorers": list(self.scorers)} if self.scorers else {}))

    @classmethod
    def from_meta(cls, meta: dict[str, Any], **changes: Any) -> "StudySettings":
        """Settings from run.yaml; studies from before high_seeds had one seed ranked by accuracy."""
        full = meta.get("fidelity_settings")
        lows = (tuple(ProxySettings(**f) for f in full["lows"]) if full
                else tuple(parse_fidelity(t) for t in meta["lows"]))
        high = ProxySettings(**full["high"]) if full else parse_fidelity(meta["high"])
        values = dict(space=space_from_dict(meta["space"], source=meta.get("space_source", "run.yaml")),
                      budget=Budget(**meta["budget"]), lows=lows, high=high, archs=meta["archs"],
                      proxies=tuple(meta["proxies"]),
                      proxy_batch=meta["proxy_batch"], spread_seeds=meta["spread_seeds"],
                      high_seeds=meta.get("high_seeds", 1), reference_metric=meta.get("reference_metric", "accuracy"),
                      classes=tuple(meta.get("classes") or ()),
                      references=meta["references"], seed=meta["seeds"]["study"], dataset=meta["dataset"],
                      data_dir=meta.get("data_dir"), workers=meta["workers"], threads=meta["threads"],
                      top_k=meta["top_k"], device=meta.get("device", "cpu"),
                      scorers=tuple(meta.get("scorers") or ()))
        values.update({k: v for k, v in changes.items() if v is not None})
        return cls(**values)


def add_lows(run: Run, settings: StudySettings, added: list[ProxySettings]) -> StudySettings:
    """The study with more low fidelities, recorded in run.yaml under the run's lock; the lows are re-read
    there, so that a process adding others to the same study at the same time keeps them too."""
    with run.lock():
        recorded = StudySettings.from_meta(run.read_meta()).lows
        lows = recorded + tuple(s for s in (*settings.lows, *added) if s not in recorded)
        settings = dataclasses.replace(settings, lows=tuple(dict.fromkeys(lows)))
        run.update_meta(**settings.fidelity_meta())
    return settings


def record_study(run: Run, settings: StudySettings, argv: list[str] | None = None) -> None:
    """Write run.yaml: command, settings, seeds, versions and hardware."""
    run.record("fidelity", settings.to_meta(), dataset=settings.dataset,
               flop_convention=flop_convention(settings.space.resolution), argv=argv)


def resume_study_settings(run: Run, *, lows: Sequence[str] = (), device: str | None = None,
                          workers: int | None = None, high_seeds: int | None = None,
                          reference_metric: str | None = None) -> StudySettings:
    """The recorded settings of a study to continue: `lows` (fidelity texts) add low fidelities, `workers`,
    `high_seeds` and `reference_metric` change (None keeps the recorded value); run.yaml follows the changes.

    A study keeps one device: a `device` other than the recorded one is an error."""
    meta = run.read_meta()
    if meta.get("kind") != "fidelity":
        raise FidelityError(f"run {run.id!r} is not a fidelity run; --resume takes a fidelity run id")
    if device and device != meta.get("device", "cpu"):
        raise FidelityError(f"--device {device}: study {run.id!r} trains on {meta.get('device', 'cpu')}; "
                            f"a study keeps one device (leave --device out, or start a new study)")
    settings = StudySettings.from_meta(meta, workers=workers, high_seeds=high_seeds, reference_metric=reference_metric)
    scorers = tuple(text for text in lows if is_scorer(text) and text not in settings.scorers)
    if scorers:  # weight-sharing estimators join a finished study like low fidelities
        settings = dataclasses.replace(settings, scorers=settings.scorers + scorers)
        run.update_meta(scorers=list(settings.scorers))
    added = [parse_fidelity(text) for text in lows if not is_scorer(text)]
    added = [s for s in added if s not in settings.lows]
    if added:  # a finished study takes more low fidelities; its other measurements are kept
        settings = add_lows(run, settings, added)
    recorded = (meta.get("high_seeds", 1), meta.get("reference_metric", "accuracy"))
    if (settings.high_seeds, settings.reference_metric) != recorded:
        run.update_meta(high_seeds=settings.high_seeds, reference_metric=settings.reference_metric)
    return settings


def check_scorers(settings: StudySettings) -> None:
    """Refuse a weight-sharing scorer made for another task than the study's (space, data, classes, main low's res)."""
    for spec in settings.scorers:
        check_estimator_task(make_estimator(spec, device=settings.device), space=settings.space,
                             dataset=settings.dataset, classes=settings.classes, res=settings.lows[0].res)
